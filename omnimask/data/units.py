"""One preprocessing unit: its inputs -> shard file(s) and a JSON report (runs in a Ray Data task).

Every record of every input is accounted for: a sample in a shard, or a
quarantine entry with its reason. An input holds one record (an image, a clip)
or, for multi-record modalities, many (a FASTA file's sequences, a TU folder's
graphs); each record is then an input of the manifest, named
``<source>#<record>``. A unit writes at most ``samples_per_shard`` samples per
shard file, ``shard-{unit:06d}`` then ``shard-{unit:06d}-0001``, ...
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from omnimask.core import registry
from omnimask.core.config import from_dict
from omnimask.core.interfaces import EncodedSample, Modality, QuarantineError
from omnimask.data.sources import InputFile
from omnimask.io.formats import SHARD_SUFFIX, ShardWriter, open_writer
from omnimask.io.manifest import file_sha256, write_atomic

UNIT_PREFIX = ".unit-"
MAX_BAD_RECORDS = 10_000
"""Quarantined records of one input after which the rest of it is quarantined unread, as one entry: a file of
millions of bad records (3.9 KB of gzip holds 2M empty FASTA records) would otherwise hold a reason for each in
the task's memory (~400 bytes each) and in the quarantine list. A file that bad is not data of its modality."""


class UnitTask:
    """Ray Data map function: one unit of inputs -> shard files and a JSON report."""

    def __init__(self, modality: str, fmt: str, options: dict[str, Any], out_dir: str, classes: list[str], samples_per_shard: int):
        self.modality, self.fmt, self.options, self.out_dir = modality, fmt, options, out_dir
        self.classes, self.samples_per_shard = classes, samples_per_shard

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        unit = json.loads(row["unit"])
        report = write_unit(unit, self.modality, self.fmt, self.options, Path(self.out_dir), self.classes, self.samples_per_shard)
        return {"report": json.dumps(report)}


class ShardRoller:
    """Writes samples into ``shard-{unit:06d}[-NNNN]`` files of at most ``limit`` samples each."""

    def __init__(self, out_dir: Path, unit: int, fmt: str, limit: int):
        self.out_dir, self.unit, self.fmt, self.limit = out_dir, unit, fmt, limit
        self.shards: list[dict[str, Any]] = []
        self._writer: Optional[ShardWriter] = None
        self._path: Optional[Path] = None
        self._count = 0
        self._sizes: list[Optional[int]] = []

    def add(self, key: str, members: dict[str, bytes], size: Optional[int] = None) -> None:
        if self._writer is None:
            part = len(self.shards)
            name = f"shard-{self.unit:06d}" + (f"-{part:04d}" if part else "") + SHARD_SUFFIX[self.fmt]
            self._path = self.out_dir / name
            self._writer = open_writer(self.fmt, self._path)
        self._writer.add(key, members)
        self._sizes.append(size)
        self._count += 1
        if self._count == self.limit:
            self._finish()

    def _finish(self) -> None:
        if self._writer is None or self._path is None:
            return
        self._writer.close()  # renames the temporary file into place
        path = self._path
        self.shards.append(
            {
                "path": path.name,
                "num_samples": self._count,
                "bytes": os.path.getsize(path),
                "sha256": file_sha256(path),
                "sizes": None if None in self._sizes else self._sizes,
            }
        )
        self._writer, self._path, self._count, self._sizes = None, None, 0, []

    def close(self) -> list[dict[str, Any]]:
        self._finish()
        return self.shards


def write_unit(
    unit: dict[str, Any],
    modality: str,
    fmt: str,
    options: dict[str, Any],
    out_dir: Path,
    classes: list[str],
    samples_per_shard: int,
) -> dict[str, Any]:
    """Encode the records of one unit's inputs into its shards; report counts, quarantine and digests."""
    started = time.time()
    mod: Modality = registry.lookup("modality", modality)()
    opts = from_dict(mod.IngestConfig, options, "preprocess")
    label_index = {c: i for i, c in enumerate(classes)}
    roller = ShardRoller(out_dir, unit["index"], fmt, samples_per_shard)
    quarantine: list[dict[str, str]] = []
    digests: list[list[str]] = []
    records = 0
    for offset, item in enumerate(unit["inputs"]):
        f = InputFile(**item)
        position = unit["first"] + offset
        done = bad = 0
        try:
            many = mod.holds_many(Path(f.path))
            if not (os.path.isfile(f.path) or mod.is_dataset_folder(Path(f.path))):
                raise QuarantineError("not a regular file")  # a broken link, a FIFO, a socket: never opened
            for name, result in mod.encode_records(Path(f.path), opts):
                source = f"{f.source}#{name}" if name else f.source
                done += 1
                if isinstance(result, QuarantineError):
                    quarantine.append({"source": source, "reason": str(result)})
                    bad += 1
                    if bad == MAX_BAD_RECORDS:
                        raise QuarantineError(
                            f"{bad:,} of its records were quarantined (MAX_BAD_RECORDS): the rest of the file is quarantined unread"
                        )
                    continue
                key = f"{position:09d}-{done - 1:08d}" if many else f"{position:09d}"
                roller.add(key, _members(result, key, source, f.label, label_index), result.size)
                if result.digest is not None:
                    digests.append([source, result.digest])
        except QuarantineError as e:
            quarantine.append({"source": f.source if not done else f"{f.source} (after {done} records)", "reason": str(e)})
            done += 1
        except Exception as e:  # any failure on one input quarantines it (the rest of it), never the job
            reason = f"{type(e).__name__}: {e}"
            quarantine.append({"source": f.source if not done else f"{f.source} (after {done} records)", "reason": reason})
            done += 1
        records += done
    shards = roller.close()
    report = {
        "index": unit["index"],
        "num_files": len(unit["inputs"]),
        "num_inputs": records,
        "shards": shards,
        "quarantine": quarantine,
        "digests": digests,
        "task": {"pid": os.getpid(), "start": started, "end": time.time()},
    }
    # after the shards' renames: a report on disk means the unit is complete (a re-run skips it)
    write_atomic(out_dir / f"{UNIT_PREFIX}{unit['index']:06d}.json", json.dumps(report).encode())
    return report


def _members(enc: EncodedSample, key: str, source: str, label: Optional[str], label_index: dict[str, int]) -> dict[str, bytes]:
    meta = {"key": key, "source": source, "label": label, "label_index": label_index.get(label, -1), **enc.meta}  # type: ignore[arg-type]  # a None label is no key: -1
    return {enc.ext: enc.payload, "json": json.dumps(meta).encode()}


def finished_units(out: Path, num_units: int) -> dict[int, dict[str, Any]]:
    """Reports of units completed by an earlier, interrupted run (all their shards in place, whole)."""
    done = {}
    for path in out.glob(f"{UNIT_PREFIX}*.json"):
        report = json.loads(path.read_text())
        if report["index"] >= num_units or "shards" not in report:
            continue
        if all((out / s["path"]).is_file() and (out / s["path"]).stat().st_size == s["bytes"] for s in report["shards"]):
            done[report["index"]] = report
    return done
