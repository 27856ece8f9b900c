"""The fast ``.npy``/``.npz`` readers give what ``np.load`` gives, and refuse what it refuses."""

import io
import zipfile

import numpy as np
import pytest

from omnimask.pipelines.npy import _parse_npy, _parse_npz, load_npy, load_npz

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
    return (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            and a.flags.f_contiguous == b.flags.f_contiguous and a.flags.writeable == b.flags.writeable)


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
    arrays = {"edge_index": np.arange(80).reshape(2, 40), "num_nodes": np.array(40),
              "x": np.random.default_rng(0).random((40, 5)).astype(np.float32)}
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
