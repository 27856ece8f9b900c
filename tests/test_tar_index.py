"""The tar shard index: plain headers are read directly, anything else by tarfile, with the same result."""

import io
import os
import tarfile

import numpy as np
import pytest

from omnimask.io.formats import TarShardWriter
from omnimask.io.tar_index import UnsafeShardError, _grouped, _plain_members, _tarfile_members
from omnimask.io.tar_index import index_tar as index_open_tar


def index_tar(path):
    with open(path, "rb") as f:
        return index_open_tar(f, path)


def by_tarfile(path):
    """The reference: the index as tarfile reads the shard (or the error it raises)."""
    try:
        with open(path, "rb") as f:
            return _grouped(_tarfile_members(f, path), str(path))
    except Exception as e:
        return type(e), str(e)


def by_index_tar(path):
    try:
        return index_tar(path)
    except Exception as e:
        return type(e), str(e)


def read_directly(path) -> bool:
    with open(path, "rb") as f:
        return _plain_members(f, os.fstat(f.fileno()).st_size, str(path)) is not None


def write_tar(path, members, fmt=tarfile.USTAR_FORMAT, **info_fields):
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in info_fields.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_omnimask_shards_are_read_directly_with_tarfiles_offsets(tmp_path):
    writer = TarShardWriter(tmp_path / "shard-000000.tar")
    payloads = {}
    for i in range(20):
        payloads[f"{i:09d}"] = {"npz": os.urandom(1 + 97 * i), "json": b'{"i": %d}' % i}
        writer.add(f"{i:09d}", payloads[f"{i:09d}"])
    writer.close()
    path = tmp_path / "shard-000000.tar"
    assert read_directly(path)
    index = index_tar(path)
    assert index == by_tarfile(path)
    raw = path.read_bytes()
    assert [key for key, _ in index] == list(payloads)
    for key, members in index:
        assert {ext: raw[off : off + size] for ext, (off, size) in members.items()} == payloads[key]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_other_writers_headers_give_tarfiles_index(tmp_path, fmt):
    """Short names are plain headers in every format; long and non-ASCII names (prefix field, GNU
    long-name records, pax records) and base-256 numbers are read as tarfile reads them."""
    short = write_tar(tmp_path / "short.tar", [("a.jpg", b"x" * 700), ("a.json", b"{}"), ("b.jpg", b"")], fmt)
    assert read_directly(short) and index_tar(short) == by_tarfile(short)
    deep = "d" * 60 + "/" + "e" * 60 + "/k.jpg"  # > 100 characters: the ustar prefix field, or an extension record
    long = write_tar(tmp_path / "long.tar", [(deep, b"1")], fmt)
    assert read_directly(long) == (fmt == tarfile.USTAR_FORMAT)  # only the prefix field is a plain header
    assert index_tar(long) == by_tarfile(long) and index_tar(long)[0][0] == deep[: -len(".jpg")]
    if fmt != tarfile.USTAR_FORMAT:
        accented = write_tar(tmp_path / "accented.tar", [("é.jpg", b"1")], fmt, uid=2**40)  # uid in base 256 or pax
        assert not read_directly(accented)
        assert index_tar(accented) == by_tarfile(accented) and index_tar(accented)[0][0] == "é"


@pytest.mark.parametrize("name", ["../escape.jpg", "/abs.jpg", "a/../../b.jpg", "\\win.jpg", "c:x.jpg", "./"])
def test_unsafe_names_are_refused(tmp_path, name):
    path = write_tar(tmp_path / "bad.tar", [("ok.jpg", b"1"), (name, b"2")])
    with pytest.raises(UnsafeShardError):
        index_tar(path)


def test_a_member_without_an_extension_is_refused_as_the_streaming_reader_refuses_it(tmp_path):
    from omnimask.io.formats import iter_tar

    path = write_tar(tmp_path / "noext.tar", [("a.jpg", b"1"), ("README", b"2")])
    with pytest.raises(ValueError, match="no extension"):
        index_tar(path)
    with pytest.raises(ValueError, match="no extension"):
        list(iter_tar(path))


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE])
def test_members_that_are_not_regular_files_are_refused(tmp_path, kind):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("ok.jpg"), io.BytesIO(b""))
        info = tarfile.TarInfo("evil.jpg")
        info.type, info.linkname = kind, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UnsafeShardError, match="non-regular"):
        index_tar(path)


def test_damaged_shards_give_what_tarfile_gives(tmp_path):
    """Random byte changes in the headers (half of them with the checksum made to add up again, so that the
    direct reader's own checks of every field are reached) and random truncations: the same index as
    tarfile's, or the same error."""
    members = [(f"{i:09d}.{ext}", os.urandom(300 + 211 * i)) for i in range(4) for ext in ("npy", "json")]
    clean = write_tar(tmp_path / "clean.tar", members).read_bytes()
    headers, pos = [], 0
    while clean[pos : pos + 512] != bytes(512):
        headers.append(pos)
        size = int(clean[pos + 124 : pos + 136].split(b"\0")[0] or b"0", 8)
        pos += 512 + -(-size // 512) * 512
    rng = np.random.default_rng(0)
    path = tmp_path / "damaged.tar"
    fast = 0
    for trial in range(600):
        raw = bytearray(clean)
        if trial % 10 == 9:
            raw = raw[: int(rng.integers(1, len(clean)))]
        else:
            header = headers[int(rng.integers(len(headers)))]
            for _ in range(int(rng.integers(1, 4))):
                raw[header + int(rng.integers(0, 512 if trial % 3 else 345))] = int(
                    rng.choice([0, 32, 47, 48, 55, 56, 128, 255, int(rng.integers(256))])
                )
            if trial % 2:
                raw[header + 148 : header + 156] = b"%06o\0 " % (
                    sum(raw[header : header + 148]) + 256 + sum(raw[header + 156 : header + 512])
                )
        path.write_bytes(bytes(raw))
        fast += read_directly(path)
        assert by_index_tar(path) == by_tarfile(path), f"trial {trial}"
    assert 100 < fast < 600, f"{fast} of 600 damaged shards read directly: both paths must be exercised"
