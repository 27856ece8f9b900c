"""NumPy ``.npy`` and ``.npz`` payloads read from bytes without pickle, in microseconds.

``np.load`` of a small payload spends most of its time outside the data: it parses
the ``.npy`` header with ``ast.literal_eval`` (a Python compile per array) and opens
an ``.npz`` with :mod:`zipfile`. For a small graph that was a large share of the
loader's time a sample. These readers parse the layout NumPy writes (a header
dictionary in NumPy's own spelling; an ``.npz`` of stored or deflated ``.npy``
members) directly and check what NumPy and :mod:`zipfile` check (format version,
header size, sizes, CRC-32 of every member, the local names against the directory's,
no object arrays); a member is never inflated past its declared size. Anything else
(another writer's header spelling, zip64, bytes around the archive, truncated or
corrupt data) goes to ``np.load(..., allow_pickle=False)``, which reads it or raises
its own error: the result and the errors are NumPy's.

:func:`read_npy_header` and :func:`read_npz_directory` read what a payload declares (shapes,
dtypes, a zip directory's uncompressed sizes) without reading or inflating its data: what an
ingest checks against its memory limits before it loads an untrusted file.
"""

from __future__ import annotations

import io
import math
import re
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Optional

import numpy as np
import numpy.lib.format as npformat

_MAGIC = b"\x93NUMPY"
_DIM = r"(?:0|[1-9][0-9]*)"
_HEADER = re.compile(rf"\{{'descr': '([^']+)', 'fortran_order': (True|False), 'shape': \((|{_DIM},|{_DIM}(?:, {_DIM})+)\), \}}[ \n]*")
_MAX_HEADER = 10000  # np.load's limit on a header it parses without allow_pickle
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # zip local file header (30 bytes)
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # zip central directory entry (46 bytes)
_END = struct.Struct("<4sHHHHIIH")  # zip end of central directory record (22 bytes)
_STORED, _DEFLATED = 0, 8


def load_npy(data: bytes | memoryview) -> np.ndarray:
    """The array of one ``.npy`` payload: a new, writeable array, as ``np.load`` gives."""
    array = _parse_npy(memoryview(data))
    return array if array is not None else np.load(io.BytesIO(bytes(data)), allow_pickle=False)


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    """``{name: array}`` of an ``.npz`` payload (member ``name.npy``), in the archive's order."""
    arrays = _parse_npz(memoryview(data))
    if arrays is not None:
        return arrays
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def _parse_npy(view: memoryview) -> Optional[np.ndarray]:
    """The array, or None where the payload is not the plain layout (the caller falls back)."""
    if len(view) < 10 or view[:6] != _MAGIC or view[6] not in (1, 2, 3) or view[7] != 0:
        return None
    if view[6] == 1:
        start, length = 10, int.from_bytes(view[8:10], "little")
    else:
        if len(view) < 12:
            return None
        start, length = 12, int.from_bytes(view[8:12], "little")
    if length > _MAX_HEADER:
        return None
    try:
        header = bytes(view[start : start + length]).decode("utf-8" if view[6] == 3 else "latin1")
    except UnicodeDecodeError:
        return None
    match = _HEADER.fullmatch(header)
    if match is None:
        return None
    descr, fortran, dims = match.groups()
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError):
        return None
    if dtype.hasobject or dtype.itemsize == 0 or dtype.subdtype is not None:
        return None  # object arrays need pickle (np.load refuses them); the others NumPy does not write
    shape = tuple(int(d) for d in dims.split(",") if d)
    count, offset = math.prod(shape), start + length
    if len(view) - offset < count * dtype.itemsize:
        return None
    flat = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
    try:
        array = np.empty(shape, dtype=dtype, order="F" if fortran == "True" else "C")  # np.load's strides
    except (ValueError, OverflowError, MemoryError):
        return None
    array.reshape(-1, order="A")[...] = flat  # a view of the new array, in its memory order
    return array


def _parse_npz(view: memoryview) -> Optional[dict[str, np.ndarray]]:
    """The arrays, or None where the archive is not a plain one of ``.npy`` members (the caller falls back)."""
    end = len(view) - _END.size  # where the record is when the archive has no comment, as NumPy writes it
    if end < 0:
        return None
    if view[end : end + 4] != b"PK\x05\x06":
        tail = max(0, end - 0xFFFF)
        end = bytes(view[tail:]).rfind(b"PK\x05\x06")
        if end < 0 or len(view) - tail - end < _END.size:
            return None
        end += tail
    _, disk, cd_disk, _, entries, cd_size, cd_offset, _ = _END.unpack_from(view, end)
    if disk or cd_disk or entries == 0xFFFF or cd_offset + cd_size != end:
        return None  # multi-disk, zip64, or bytes before the archive or between its parts
    if view[:4] != (b"PK\x03\x04" if entries else b"PK\x05\x06"):
        return None  # the archive must be the whole payload
    arrays: dict[str, np.ndarray] = {}
    pos = cd_offset
    for _ in range(entries):
        if pos + _CENTRAL.size > end:
            return None
        (sig, _, needed, flags, method, _, _, crc, packed, size, name_len, extra_len, comment_len, _, _, _, local) = _CENTRAL.unpack_from(
            view, pos
        )
        name = bytes(view[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len])
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        if sig != b"PK\x01\x02" or needed > 63 or flags & 0x61 or method not in (_STORED, _DEFLATED):
            return None  # a zip feature zipfile refuses (encryption, patched data) or a compression it lacks
        if not name.endswith(b".npy") or b"\0" in name or 0xFFFFFFFF in (packed, size, local) or local + _LOCAL.size > cd_offset:
            return None
        lsig, *_, lname_len, lextra_len = _LOCAL.unpack_from(view, local)
        start = local + _LOCAL.size + lname_len + lextra_len
        if lsig != b"PK\x03\x04" or view[local + _LOCAL.size : local + _LOCAL.size + lname_len] != name or start + packed > cd_offset:
            return None  # zipfile refuses a local name that differs from the directory's
        member = view[start : start + packed]
        if method == _DEFLATED:
            inflate = zlib.decompressobj(-15)
            try:
                member = memoryview(inflate.decompress(member, size + 1))  # never more than the declared size + 1
            except zlib.error:
                return None
            if not inflate.eof:
                return None
        if len(member) != size or zlib.crc32(member) != crc:
            return None
        array = _parse_npy(member)
        key = name[:-4].decode("utf-8" if flags & 0x800 else "cp437")  # as zipfile names it
        if array is None or key in arrays:
            return None
        arrays[key] = array
    return arrays if pos == end else None


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npy`` header declares: the array's ``shape`` and ``dtype``, and ``offset``, the bytes
    from the magic to the data (so the data take ``offset + nbytes`` bytes of a well-formed payload)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def nbytes(self) -> int:
        """Bytes of the declared data (a Python int: a lying header's product does not overflow)."""
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class NpzMember:
    """One member of an ``.npz`` as the archive declares it: ``name`` (as ``np.load`` names it),
    ``size`` (its uncompressed bytes, from the zip directory) and ``header`` (None where the member is not
    an ``.npy``: ``np.load`` then gives its bytes)."""

    name: str
    size: int
    header: NpyHeader | None


def read_npy_header(stream: BinaryIO) -> NpyHeader | None:
    """The header of the ``.npy`` that starts at ``stream``'s position, or None where no ``.npy`` magic is
    there. Reads the header only (at most ~10 kB, NumPy's limit), parsed by NumPy's own reader; raises
    ValueError on a header ``np.load`` refuses or one declaring a negative dimension (which ``np.load``
    refuses only when it allocates). A 3.0 header (UTF-8 field names) is read as 2.0's latin-1: its shape and
    itemsize are the same."""
    start = stream.tell()
    magic = stream.read(len(_MAGIC) + 2)
    if len(magic) < len(_MAGIC) + 2 or magic[: len(_MAGIC)] != _MAGIC:
        return None
    if (magic[-2], magic[-1]) not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f"unsupported .npy format version {magic[-2]}.{magic[-1]}")
    fast = _plain_header(stream, version=magic[-2])  # NumPy's own spelling, without its tokenizer (which compiles Python)
    if fast is not None:
        return NpyHeader(fast[0], fast[1], stream.tell() - start)
    stream.seek(start + len(_MAGIC) + 2)
    reader = npformat.read_array_header_1_0 if magic[-2] == 1 else npformat.read_array_header_2_0
    try:
        shape, _, dtype = reader(stream, max_header_size=_MAX_HEADER)
    except tokenize.TokenError as e:  # NumPy tokenizes a header to read old spellings: a broken one raises this
        raise ValueError(f"unparsable .npy header: {e}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f".npy header declares a negative dimension: shape {shape}")
    return NpyHeader(tuple(shape), dtype, stream.tell() - start)


def _plain_header(stream: BinaryIO, *, version: int) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(shape, dtype)`` of a header in the spelling NumPy writes (:data:`_HEADER`), read from just after the
    version bytes; None for anything else (the caller seeks back and lets NumPy's reader decide)."""
    width = 2 if version == 1 else 4
    raw = stream.read(width)
    if len(raw) < width:
        return None
    length = int.from_bytes(raw, "little")
    if length > _MAX_HEADER:
        return None
    try:
        match = _HEADER.fullmatch(stream.read(length).decode("utf-8" if version == 3 else "latin1"))
        dtype = np.dtype(match.group(1)) if match else None
    except (UnicodeDecodeError, TypeError, ValueError):
        return None
    if match is None or dtype is None or dtype.hasobject or dtype.subdtype is not None:
        return None
    return tuple(int(d) for d in match.group(3).split(",") if d), dtype


def read_npz_directory(data: bytes) -> list[NpzMember]:
    """The members of an ``.npz`` payload as its zip directory and their ``.npy`` headers declare them,
    inflating no more than each member's header (a few hundred bytes; zipfile inflates a few kB at a time):
    what an ingest checks before it lets ``load_npz`` inflate anything. Raises zipfile's and NumPy's errors
    on what ``np.load`` would refuse (not a zip, encrypted members, a local name that differs, a bad header)."""
    members = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                header = read_npy_header(member)
            name = info.filename.removesuffix(".npy")  # as np.load names it
            members.append(NpzMember(name, info.file_size, header))
    return members
