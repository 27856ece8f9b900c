"""The shard contract: ``manifest.json`` and ``quarantine.jsonl`` beside the shards.

Invariant: ``num_inputs == num_samples + num_quarantined`` and the shards'
sample counts add up to ``num_samples``. Shard paths are relative to the
manifest. The manifest is written last, atomically: a directory with a
manifest is a complete dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from omnimask.core.version import __version__

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.jsonl"
DUPLICATES = "duplicates.jsonl"
SIZES = "sizes.npy"
"""Samples whose content equals an earlier one (protein sequences), one {"source", "same_as"} per line."""
Format = Literal["webdataset", "parquet"]


@dataclass
class ShardInfo:
    """One shard file: its path (relative to the manifest), sample count, size in bytes and sha256."""

    path: str
    num_samples: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """``manifest.json``: what a preprocessed dataset holds and how it was made (see the module docstring)."""

    modality: str
    format: Format
    num_inputs: int
    num_samples: int
    num_quarantined: int
    shards: list[ShardInfo]
    preprocess: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    """Sorted class labels (sub-folder names); a sample's ``label_index`` points here."""
    sizes: Optional[dict[str, str]] = None
    """``{"path": "sizes.npy", "sha256": ...}`` when every sample has a size (residues, nodes): int64
    sizes in shard order then sample order, for token-budget batching."""
    omnimask_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def validate(self) -> None:
        if self.num_inputs != self.num_samples + self.num_quarantined:
            raise ValueError(
                f"manifest accounting broken: num_inputs={self.num_inputs} != "
                f"num_samples={self.num_samples} + num_quarantined={self.num_quarantined}"
            )
        in_shards = sum(s.num_samples for s in self.shards)
        if in_shards != self.num_samples:
            raise ValueError(f"manifest shards hold {in_shards} samples, num_samples says {self.num_samples}")

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def save(self, directory: Path) -> Path:
        self.validate()
        return write_atomic(Path(directory) / MANIFEST, json.dumps(dataclasses.asdict(self), indent=2).encode())

    def no_samples(self, directory: str | Path) -> str:
        """What to say of a dataset in ``directory`` that holds no samples."""
        return (
            f"{directory} holds no samples: all {self.num_inputs} inputs were quarantined "
            f"(the reasons are in {Path(directory) / QUARANTINE})"
        )

    @classmethod
    def load(cls, directory: str | Path) -> "Manifest":
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no {MANIFEST} in {directory}: is it a directory written by `omnimask preprocess`?")
        data = json.loads(path.read_text())
        data["shards"] = [ShardInfo(**s) for s in data["shards"]]
        known = {f.name for f in dataclasses.fields(cls)}
        manifest = cls(**{k: v for k, v in data.items() if k in known})
        manifest.validate()
        return manifest


def load_sizes(directory: str | Path, manifest: Manifest) -> np.ndarray:
    """The samples' sizes ``[num_samples]`` (int64, shard order), checked against the manifest."""
    if manifest.sizes is None:
        raise ValueError(
            f"{directory} has no sample sizes (token-budget batching needs a protein or graph dataset "
            "whose manifest lists its sizes.npy: preprocess it again with this omnimask)"
        )
    path = Path(directory) / manifest.sizes["path"]
    digest = file_sha256(path) if path.is_file() else "missing"
    if digest != manifest.sizes["sha256"]:
        raise ValueError(f"{path} is {digest if digest == 'missing' else 'modified'}: its sha256 does not match the manifest")
    sizes = np.load(path, allow_pickle=False)
    if sizes.shape != (manifest.num_samples,):
        raise ValueError(f"{path} holds {sizes.shape} sizes for {manifest.num_samples} samples")
    return sizes


def check_shard_sizes(root: Path, manifest: Manifest) -> None:
    """Raise ``ValueError`` naming the first shard under ``root`` that is missing or not the manifest's size (a
    ``stat`` per shard: what a loader checks before it starts)."""
    for shard in manifest.shards:
        actual = os.path.getsize(root / shard.path) if (root / shard.path).exists() else None
        if actual != shard.bytes:
            raise ValueError(
                f"shard {shard.path} in {root} is {actual if actual is not None else 'missing'} bytes, "
                f"the manifest says {shard.bytes}: the dataset is incomplete or was modified"
            )


def check_shard_digest(root: Path, shard: ShardInfo) -> None:
    """Raise ``ValueError`` if the shard's sha256 is not the manifest's (``data.verify_shards``)."""
    digest = file_sha256(root / shard.path)
    if digest != shard.sha256:
        raise ValueError(f"shard {shard.path} in {root} has sha256 {digest}, the manifest says {shard.sha256}")


def read_quarantine(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / QUARANTINE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
