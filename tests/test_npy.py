"""The fast ``.npy``/``.npz`` readers give what ``np.load`` gives, and refuse what it refuses."""

import io
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from omnimask.io.npy import _parse_npy, _parse_npz, load_npy, load_npz

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.asfortranarray(np.arange(24.0).reshape(2, 3, 4)),
    np.arange(7, dtype=">i2"),
    np.array(5, dtype=np.int64),
    np.zeros((0, 3), np.float32),
    np.array([True, False]),
    np.array(["ab", "c"]),
    np.array([1 + 2j, 3j]),
]


def npy_bytes(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(a, b)
        and a.flags.f_contiguous == b.flags.f_contiguous
        and a.flags.writeable == b.flags.writeable
    )


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_npy_as_numpy_loads_it_on_the_fast_path(array):
    data = npy_bytes(array)
    assert _parse_npy(memoryview(data)) is not None  # NumPy's own layout never needs the fallback
    got = load_npy(data)
    assert same(got, np.load(io.BytesIO(data), allow_pickle=False)) and same(got, array)
    assert not np.shares_memory(got, np.frombuffer(data, np.uint8))  # a fresh array, not a view of the payload


def test_npy_other_layouts_go_to_numpy():
    structured = np.zeros(3, dtype=[("a", "<f4"), ("b", "<i2")])
    data = npy_bytes(structured)
    assert _parse_npy(memoryview(data)) is None and same(load_npy(data), structured)
    header = "{'shape': (2,), 'fortran_order': False, 'descr': '<i4'}".ljust(117) + "\n"  # keys in another order
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + np.array([7, 9], "<i4").tobytes()
    assert _parse_npy(memoryview(data)) is None and load_npy(data).tolist() == [7, 9]


def test_npy_refuses_object_arrays_and_truncated_data():
    with pytest.raises(ValueError, match="allow_pickle"):
        load_npy(npy_bytes(np.array([{"a": 1}], dtype=object), allow_pickle=True))
    with pytest.raises(ValueError, match="EOF"):
        load_npy(npy_bytes(np.arange(100))[:-8])
    with pytest.raises(ValueError):
        load_npy(b"not an array")
    header = "{'descr': '(3)<f4', 'fortran_order': False, 'shape': (2,), }".ljust(117) + "\n"  # not NumPy's: it refuses
    with pytest.raises(ValueError, match="descr"):
        load_npy(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(24))


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_as_numpy_loads_it_on_the_fast_path(compressed):
    arrays = {
        "edge_index": np.arange(80).reshape(2, 40),
        "num_nodes": np.array(40),
        "x": np.random.default_rng(0).random((40, 5)).astype(np.float32),
    }
    data = npz_bytes(compressed, **arrays)
    assert _parse_npz(memoryview(data)) is not None
    got = load_npz(data)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert list(got) == z.files == list(arrays)
        assert all(same(got[k], z[k]) for k in z.files)


def test_npz_with_a_comment_or_other_members_goes_to_numpy():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.npy", npy_bytes(np.arange(3)))
        z.comment = b"written by hand"
    data = buf.getvalue()
    assert _parse_npz(memoryview(data)) is not None  # the end record found behind the comment
    assert load_npz(data)["a"].tolist() == [0, 1, 2]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.npy", npy_bytes(np.arange(3)))
        z.writestr("notes.txt", b"hello")
    data = buf.getvalue()
    assert _parse_npz(memoryview(data)) is None
    assert load_npz(data)["a"].tolist() == [0, 1, 2]


def test_npz_refuses_corrupt_and_truncated_archives():
    data = bytearray(npz_bytes(a=np.arange(10)))
    data[data.index(np.arange(10).tobytes())] ^= 0xFF  # a payload byte: the CRC no longer matches
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        load_npz(bytes(data))
    whole = npz_bytes(a=np.arange(10))
    for cut in (10, len(whole) // 2, len(whole) - 5):
        with pytest.raises(zipfile.BadZipFile):
            load_npz(whole[:cut])
    with pytest.raises(ValueError, match="allow_pickle"):
        load_npz(npz_bytes(a=np.array([None, 1], dtype=object)))


def test_archives_numpy_reads_differently_go_to_numpy():
    """What zipfile checks or reads in its own way is left to it: bytes before the archive, an entry count
    short of the directory, NUL in a name, a local name that differs from the directory's."""
    first, second = npz_bytes(a=np.zeros(3)), npz_bytes(a=np.ones(3))
    short = bytearray(npz_bytes(a=np.arange(3), b=np.arange(2.0)))
    end = short.rfind(b"PK\x05\x06")
    short[end + 8 : end + 12] = (1).to_bytes(2, "little") * 2  # the end record counts one entry of two
    nul = npz_bytes(abcde=np.arange(3)).replace(b"abcde.npy", b"a\x00cde.npy")
    for data in (first + second, bytes(short), nul):
        assert _parse_npz(memoryview(data)) is None
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            assert list(load_npz(data)) == z.files and all(np.array_equal(load_npz(data)[k], z[k]) for k in z.files)
    renamed = bytearray(npz_bytes(a=np.arange(3)))
    renamed[renamed.find(b"a.npy")] = ord("c")  # the local header's copy of the name
    with pytest.raises(zipfile.BadZipFile, match="differ"):
        load_npz(bytes(renamed))
    with pytest.raises(ValueError, match="pickled"):
        load_npz(b"junk" + b"PK\x05\x06" + bytes(18))


def test_a_deflated_member_is_inflated_no_further_than_its_declared_size():
    data = npy_bytes(np.arange(3))
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = packer.compress(data + bytes(20_000_000)) + packer.flush()  # 20 MB of zeros after the array
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.npy", data)
    archive, info = buf.getvalue(), zipfile.ZipFile(buf).infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    grown = bytearray(archive[:start] + bomb + archive[start + info.compress_size :])
    struct.pack_into("<I", grown, info.header_offset + 18, len(bomb))  # the local header's compressed size
    central = grown.rfind(b"PK\x01\x02")
    struct.pack_into("<I", grown, central + 20, len(bomb))
    end = grown.rfind(b"PK\x05\x06")
    struct.pack_into("<I", grown, end + 16, central)  # the directory moved by the longer data
    tracemalloc.start()
    try:
        assert _parse_npz(memoryview(bytes(grown))) is None  # longer than declared: NumPy's reader decides
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(grown) + 100_000, peak  # the 20 MB were never inflated
    assert load_npz(bytes(grown))["a"].tolist() == [0, 1, 2]  # np.load reads the declared bytes only


def test_npy_headers_numpy_would_not_parse_go_to_numpy():
    body = np.array([1], "<i4").tobytes()
    for header, minor in (
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (01,), }", 0),
        ("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", 5),
    ):
        header = header.ljust(117) + "\n"
        data = b"\x93NUMPY\x01" + bytes([minor]) + len(header).to_bytes(2, "little") + header.encode() + body
        assert _parse_npy(memoryview(data)) is None
        with pytest.raises(ValueError):
            load_npy(data)
