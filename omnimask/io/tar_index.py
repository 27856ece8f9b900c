"""The member index of a tar shard, ``[(key, {ext: (data offset, size)})]``, read from its headers.

:class:`~omnimask.io.formats.ShardFile` indexes a shard when the loader first opens it.
``tarfile`` parses every field of every header into a ``TarInfo``: with the safety checks, a
noticeable share of a small sample's time through the loader (a graph: two members), and several
times what reading only the fields needed takes here.
The fast path here reads the plain headers that tar writers produce (regular files, octal
numbers, a correct checksum, UTF-8 names) and takes from them what ``tarfile`` takes: name
(with the ustar prefix), size, where the data starts; it checks what ``tarfile`` checks of them.
Any other header (pax or GNU extensions, links and directories, base-256 numbers, a checksum that
does not add up, data past the end of the file, a header cut short) sends the whole shard to
``tarfile``, so the index and the errors are always tarfile's.

Both paths, and :func:`~omnimask.io.formats.iter_tar`, refuse members that are not regular
files and names that are absolute or hold ``..`` (:func:`check_member`).
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path
from typing import BinaryIO, Iterable, Optional

Index = list[tuple[str, dict[str, tuple[int, int]]]]
Member = tuple[str, int, int]  # name, data offset, size

BLOCK = 512
_ZERO = bytes(BLOCK)
# An octal number field that tarfile's ``nti`` reads as the same value: spaces, octal digits, spaces,
# then optionally a NUL and anything (nti stops at the first NUL). Base-256 and other forms do not match.
_NUMBER = re.compile(rb" *([0-7]*) *(?:\0.*)?", re.DOTALL)
_CHECKED = ((100, 108), (108, 116), (116, 124), (136, 148), (329, 337), (337, 345))  # mode uid gid mtime devmajor devminor
_SIZE, _CHKSUM = (124, 136), (148, 156)


class UnsafeShardError(ValueError):
    """A shard holds a member that must not be read (link, absolute or ``..`` path)."""


def check_member_name(name: str, shard: str) -> None:
    """Refuse a member name that is empty, absolute (``/``, ``\\``), climbs (``..``) or starts with a
    drive (``c:``); components are split as ``PurePosixPath`` splits them (``.`` and empty ones dropped)."""
    parts = [p for p in name.split("/") if p and p != "."]
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise UnsafeShardError(f"shard {shard}: refusing member with unsafe path {name!r}")


def check_member(info: tarfile.TarInfo, shard: str) -> None:
    """Refuse a member whose name is unsafe or that is not a regular file."""
    check_member_name(info.name, shard)
    if not info.isfile():
        raise UnsafeShardError(f"shard {shard}: refusing non-regular member {info.name!r} (type {info.type!r})")


def split_member_name(name: str, shard: str) -> tuple[str, str]:
    """``<dir>/<stem>.<ext>`` -> (key ``<dir>/<stem>``, ext): WebDataset splits at the first dot of the base name."""
    dirname, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot:
        raise ValueError(f"shard {shard}: member {name!r} has no extension")
    return (f"{dirname}/{stem}" if dirname else stem), ext


def index_tar(f: BinaryIO, path: Path) -> Index:
    """Every sample of the tar shard ``f`` (open for binary reading, at ``path``): its key and each
    member's data offset and size, in order.

    Raises :class:`UnsafeShardError` for a member that is not a regular file or whose name is unsafe,
    ``ValueError`` for a name without an extension, and ``tarfile``'s errors for a broken archive."""
    members = _plain_members(f, os.fstat(f.fileno()).st_size, str(path))
    return _grouped(members if members is not None else _tarfile_members(f, path), str(path))


def _plain_members(f: BinaryIO, file_size: int, shard: str) -> Optional[list[Member]]:
    """The members of a tar of plain headers, or None at the first header of any other kind."""
    members: list[Member] = []
    pos = 0
    while True:
        f.seek(pos)
        block = f.read(BLOCK)
        if pos and (not block or block == _ZERO):
            return members  # the end-of-archive block, or the end of the file after a whole member
        if len(block) != BLOCK or block[156:157] not in (b"0", b"\0"):
            return None
        size = _number(block, *_SIZE)
        checksum = _number(block, *_CHKSUM)
        if size is None or checksum is None or any(_NUMBER.fullmatch(block, a, b) is None for a, b in _CHECKED):
            return None
        if checksum != sum(block) - sum(block[148:156]) + 8 * 32:  # the checksum field counts as spaces
            return None
        try:
            name = block[:100].split(b"\0", 1)[0].decode()
            prefix = block[345:500].split(b"\0", 1)[0].decode()
        except UnicodeDecodeError:
            return None
        if prefix:
            name = f"{prefix}/{name}"
        end = pos + BLOCK + -(-size // BLOCK) * BLOCK
        if name.endswith("/") or end > file_size:
            return None  # a directory in old tars; data that the file does not hold
        check_member_name(name, shard)
        members.append((name, pos + BLOCK, size))
        pos = end


def _number(block: bytes, start: int, stop: int) -> Optional[int]:
    match = _NUMBER.fullmatch(block, start, stop)
    return None if match is None else int(match.group(1) or b"0", 8)


def _tarfile_members(f: BinaryIO, path: Path) -> list[Member]:
    """The members as ``tarfile`` reads them, with the same safety checks."""
    members: list[Member] = []
    f.seek(0)
    with tarfile.open(fileobj=f, mode="r:") as tar:
        for info in tar:
            check_member(info, str(path))
            members.append((info.name, info.offset_data, info.size))
    return members


def _grouped(members: Iterable[Member], shard: str) -> Index:
    """Consecutive members with the same key form a sample (:func:`split_member_name`)."""
    index: Index = []
    for name, offset, size in members:
        key, ext = split_member_name(name, shard)
        if not index or index[-1][0] != key:
            index.append((key, {}))
        index[-1][1][ext] = (offset, size)
    return index
