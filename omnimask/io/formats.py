"""Shard formats: WebDataset tar and Parquet, written atomically and read safely.

A sample is a key plus members ``{ext: bytes}`` (e.g. ``{"jpg": ..., "json": ...}``).

- WebDataset: members ``<key>.<ext>`` in one tar, grouped by key, readable by the
  upstream ``webdataset`` package and Ray Data's ``read_webdataset``. Keys hold
  no dots (readers split the name at the first dot).
- Parquet: one row per sample, columns ``key``, ``ext``, ``data`` (the payload)
  and ``json`` (the metadata), readable by ``pyarrow``.

Readers never unpickle anything and refuse tar members that are not regular
files or whose names are absolute or contain ``..``.
"""

from __future__ import annotations

import bisect
import io
import os
import tarfile
from pathlib import Path
from typing import Iterator, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from omnimask.io.tar_index import UnsafeShardError as UnsafeShardError  # re-exported: the redundant alias says so
from omnimask.io.tar_index import check_member, index_tar, split_member_name

Sample = tuple[str, dict[str, bytes]]
SHARD_SUFFIX = {"webdataset": ".tar", "parquet": ".parquet"}
PARQUET_SCHEMA = pa.schema([("key", pa.string()), ("ext", pa.string()), ("data", pa.binary()), ("json", pa.string())])


class ShardWriter(Protocol):
    """Writes one shard (tar or Parquet) through a temporary file that ``close`` renames into place."""

    def add(self, key: str, members: dict[str, bytes]) -> None: ...
    def close(self) -> None: ...


def check_key(key: str) -> None:
    if not key or "." in key or "/" in key:
        raise ValueError(f"sample key {key!r} must be non-empty and hold no '.' or '/'")


class TarShardWriter:
    """Writes ``<path>`` through ``.<name>.tmp`` and renames it on :meth:`close`.

    Members carry fixed metadata (mtime 0, uid 0, mode 0444), so the same samples
    give the same bytes and the same sha256.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._tar = tarfile.open(self.tmp, "w", format=tarfile.USTAR_FORMAT)

    def add(self, key: str, members: dict[str, bytes]) -> None:
        check_key(key)
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()
        os.replace(self.tmp, self.path)


class ParquetShardWriter:
    """Collects rows and writes one Parquet file on :meth:`close` (through a temp name)."""

    def __init__(self, path: Path, row_group_size: int = 256):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.row_group_size = row_group_size
        self._rows: dict[str, list] = {name: [] for name in PARQUET_SCHEMA.names}

    def add(self, key: str, members: dict[str, bytes]) -> None:
        check_key(key)
        payload = [ext for ext in members if ext != "json"]
        if len(payload) != 1:
            raise ValueError(f"a Parquet sample holds one payload member besides json, got {sorted(members)}")
        self._rows["key"].append(key)
        self._rows["ext"].append(payload[0])
        self._rows["data"].append(members[payload[0]])
        self._rows["json"].append(members.get("json", b"{}").decode())

    def close(self) -> None:
        table = pa.table(self._rows, schema=PARQUET_SCHEMA)
        pq.write_table(table, self.tmp, row_group_size=self.row_group_size, compression="none")
        os.replace(self.tmp, self.path)


def open_writer(fmt: str, path: Path) -> ShardWriter:
    if fmt == "webdataset":
        return TarShardWriter(path)
    if fmt == "parquet":
        return ParquetShardWriter(path)
    raise ValueError(f"unknown shard format {fmt!r}; use 'webdataset' or 'parquet'")


def iter_tar(path: Path) -> Iterator[Sample]:
    """Samples of a tar shard, streamed in order; members grouped by key."""
    key, members = None, {}
    with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for info in tar:
            check_member(info, str(path))
            member_key, ext = split_member_name(info.name, str(path))
            if member_key != key:
                if key is not None:
                    yield key, members
                key, members = member_key, {}
            members[ext] = tar.extractfile(info).read()  # type: ignore[union-attr]  # check_member passed only regular files: never None
    if key is not None:
        yield key, members


def iter_parquet(path: Path, batch_rows: int = 64) -> Iterator[Sample]:
    """Samples of a Parquet shard, streamed by record batch."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=PARQUET_SCHEMA.names):
        cols = batch.to_pydict()
        for key, ext, data, meta in zip(cols["key"], cols["ext"], cols["data"], cols["json"]):
            yield key, {ext: data, "json": meta.encode()}


def iter_shard(fmt: str, path: Path) -> Iterator[Sample]:
    if fmt == "webdataset":
        return iter_tar(path)
    if fmt == "parquet":
        return iter_parquet(path)
    raise ValueError(f"unknown shard format {fmt!r}")


class ShardFile:
    """Random access to the samples of one shard: ``len(shard)`` and ``shard[j] -> (key, members)``.

    A tar shard is indexed once by reading its member headers (data is skipped
    by seeking; :func:`~omnimask.io.tar_index.index_tar`), with the same safety checks as :func:`iter_tar`; a Parquet
    shard is read a row group at a time, the last one kept.
    """

    def __init__(self, fmt: str, path: Path):
        self.fmt, self.path = fmt, Path(path)
        if fmt == "webdataset":
            self._file = open(self.path, "rb")  # kept open: one open per shard, not per sample
            try:
                self._index = index_tar(self._file, self.path)
            except BaseException:
                self._file.close()
                raise
        elif fmt == "parquet":
            self._pf = pq.ParquetFile(self.path)
            sizes = [self._pf.metadata.row_group(i).num_rows for i in range(self._pf.num_row_groups)]
            self._starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
            self._group: tuple[int, dict] = (-1, {})
        else:
            raise ValueError(f"unknown shard format {fmt!r}")

    def __len__(self) -> int:
        return len(self._index) if self.fmt == "webdataset" else self._starts[-1]

    def __getitem__(self, j: int) -> Sample:
        if self.fmt == "webdataset":
            key, members = self._index[j]
            out = {}
            for ext, (offset, size) in members.items():
                self._file.seek(offset)
                out[ext] = self._file.read(size)
            return key, out
        g = bisect.bisect_right(self._starts, j) - 1
        if self._group[0] != g:
            self._group = (g, self._pf.read_row_group(g, columns=PARQUET_SCHEMA.names).to_pydict())
        cols, k = self._group[1], j - self._starts[g]
        return cols["key"][k], {cols["ext"][k]: cols["data"][k], "json": cols["json"][k].encode()}
