"""``omnimask inspect DIR [--verify]``: what a shard directory holds, and whether it is intact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omnimask.io.formats import iter_shard
from omnimask.io.manifest import Manifest, file_sha256, load_sizes, read_quarantine


@dataclass
class Inspection:
    """What ``omnimask inspect`` found: the manifest, whether it re-hashed the shards, and the problems."""

    manifest: Manifest
    problems: list[str] = field(default_factory=list)
    verified: bool = False

    def summary(self) -> str:
        m = self.manifest
        lines = [
            f"modality     {m.modality}",
            f"format       {m.format}",
            f"samples      {m.num_samples} (of {m.num_inputs} inputs; {m.num_quarantined} quarantined)",
            f"shards       {len(m.shards)}",
            f"bytes        {m.total_bytes:,} ({m.total_bytes / 1e6:.1f} MB)",
            f"classes      {len(m.classes)}",
            f"created      {m.created_at} by omnimask {m.omnimask_version}",
        ]
        if self.verified:
            lines.append(
                "verify       "
                + (
                    "OK: every shard matches its size, sha256 and sample count"
                    if not self.problems
                    else f"FAILED: {len(self.problems)} problem(s)"
                )
            )
        return "\n".join(lines + [f"  - {p}" for p in self.problems])


def inspect_dataset(directory: str | Path, verify: bool = False) -> Inspection:
    """Load the manifest; with ``verify``, re-hash and re-count every shard."""
    root = Path(directory)
    manifest = Manifest.load(root)
    result = Inspection(manifest)
    quarantined = len(read_quarantine(root))
    if quarantined != manifest.num_quarantined:
        result.problems.append(f"quarantine.jsonl lists {quarantined} inputs, the manifest says {manifest.num_quarantined}")
    if not verify:
        return result
    result.verified = True
    for shard in manifest.shards:
        path = root / shard.path
        if not path.is_file():
            result.problems.append(f"{shard.path}: missing")
            continue
        size = path.stat().st_size
        if size != shard.bytes:
            result.problems.append(f"{shard.path}: {size} bytes, the manifest says {shard.bytes}")
        digest = file_sha256(path)
        if digest != shard.sha256:
            result.problems.append(f"{shard.path}: sha256 {digest[:12]}..., the manifest says {shard.sha256[:12]}...")
        try:
            count = sum(1 for _ in iter_shard(manifest.format, path))
        except Exception as e:  # a truncated or corrupt shard cannot be read to the end
            result.problems.append(f"{shard.path}: unreadable ({type(e).__name__}: {e})")
            continue
        if count != shard.num_samples:
            result.problems.append(f"{shard.path}: {count} samples, the manifest says {shard.num_samples}")
    if manifest.sizes is not None:
        try:
            load_sizes(root, manifest)
        except ValueError as e:
            result.problems.append(str(e))
    return result
