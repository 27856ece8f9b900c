"""Preprocessing throughput per modality: the Ray Data job vs a plain single-process ``webdataset.ShardWriter`` loop.

    python -m benchmarks.preprocess [--modality image video ...] [--scale 1.0] [--cpus 2]

Both sides run the same per-file work, the modality's ``encode_records`` (read,
validate, decode, re-encode), over the same inputs; the baseline writes each
sample with ``webdataset.ShardWriter`` in one process, omnimask runs its
preprocessing job (units mapped by Ray Data over ``--cpus`` CPUs, shard
checksums, manifest, quarantine list, sizes). Times are wall-clock around each
call with Ray already running and warm: Ray's one-off costs, starting the
instance and the first job's worker processes (Ray Data's executor, importing
torch and omnimask in each worker: about 3 s on 2 cores), are measured on a
2-input warm-up job and reported apart, as a fixed cost that a real dataset
amortises. Figures: inputs/s and MB/s of input.

``scaling`` runs the image job (decode, resize to 256, re-encode) on a fresh Ray
instance with 1, then 2 CPUs: the same warm-up, then the timed job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inputs import build_inputs

# modality: (inputs at scale 1, ingest options, samples per shard)
CASES: dict[str, tuple[int, dict[str, Any], int]] = {
    "image": (1600, {"resize": 256}, 128),
    "video": (32, {}, 8),
    "audio": (160, {}, 32),
    "pointcloud": (2000, {}, 64),
    "graph": (8000, {}, 256),
    "protein": (24, {}, 256),  # FASTA files of 400 sequences each
}


def shardwriter_loop(modality: str, raw: Path, out: Path, options: dict[str, Any], samples_per_shard: int) -> dict[str, int]:
    """The baseline: list, encode and write every record in this process with ``webdataset.ShardWriter``."""
    import webdataset as wds

    from omnimask.core import registry
    from omnimask.core.config import from_dict
    from omnimask.core.interfaces import QuarantineError
    from omnimask.data.sources import list_inputs

    mod = registry.lookup("modality", modality)()
    opts = from_dict(mod.IngestConfig, options, "preprocess")
    out.mkdir(parents=True)
    written = bad = 0
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=samples_per_shard, verbose=0) as sink:
        for f in list_inputs(raw, mod.is_dataset_folder):
            try:
                for _, result in mod.encode_records(Path(f.path), opts):
                    if isinstance(result, QuarantineError):
                        bad += 1
                        continue
                    sink.write(
                        {
                            "__key__": f"{written:09d}",
                            result.ext: result.payload,
                            "json": json.dumps({"source": f.source, **result.meta}).encode(),
                        }
                    )
                    written += 1
            except Exception:
                bad += 1
    return {"samples": written, "failed": bad}


def measure(modality: str, tmp: Path, scale: float = 1.0) -> dict[str, Any]:
    """One modality, both ways, inside a running Ray session."""
    from omnimask.data.preprocess import preprocess

    count, options, per_shard = CASES[modality]
    raw = tmp / modality / "raw"
    raw.mkdir(parents=True)
    files = build_inputs(modality, raw, max(2, int(count * scale)))
    mb = sum(p.stat().st_size for p in files if p.is_file()) / 1e6
    t = time.perf_counter()
    base = shardwriter_loop(modality, raw, tmp / modality / "wds", options, per_shard)
    base_s = time.perf_counter() - t
    t = time.perf_counter()
    m = preprocess(modality, raw, tmp / modality / "omnimask", samples_per_shard=per_shard, options=options)
    ours_s = time.perf_counter() - t
    if m.num_samples != base["samples"]:
        raise AssertionError(f"{modality}: omnimask wrote {m.num_samples} samples, the baseline {base['samples']}")
    return {
        "modality": modality,
        "files": len(files),
        "samples": m.num_samples,
        "input_mb": round(mb, 2),
        "options": options,
        "samples_per_shard": per_shard,
        "shardwriter_samples_per_s": base["samples"] / base_s,
        "shardwriter_mb_per_s": mb / base_s,
        "omnimask_samples_per_s": m.num_samples / ours_s,
        "omnimask_mb_per_s": mb / ours_s,
        "omnimask_job_seconds": m.preprocess["seconds"],
        "omnimask_workers": m.preprocess["workers"],
        "speedup": base_s / ours_s,
    }


def warm_up(tmp: Path) -> dict[str, float]:
    """Start Ray (when it is not running) and run a 2-image job: the fixed costs every job's figures leave out."""
    from omnimask.data.preprocess import preprocess

    raw = tmp / "warm-up"
    raw.mkdir()
    build_inputs("image", raw, 2)
    t = time.perf_counter()
    preprocess("image", raw, tmp / "warm-up-out", samples_per_shard=1)
    return {"first_job_s": time.perf_counter() - t}


def run(modalities: list[str], scale: float, cpus: int) -> list[dict[str, Any]]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from omnimask.data.ray_env import ray_session

    rows = []
    with tempfile.TemporaryDirectory() as tmp, ray_session(num_cpus=cpus):
        fixed = warm_up(Path(tmp))
        print(f"preprocess: first job on a fresh Ray instance (2 inputs) {fixed['first_job_s']:.1f} s", flush=True)
        for modality in modalities:
            row = measure(modality, Path(tmp), scale)
            row.update(fixed)
            rows.append(row)
            print(
                f"preprocess {modality}: {row['samples']} samples ({row['input_mb']:.1f} MB) | ShardWriter loop "
                f"{row['shardwriter_samples_per_s']:.1f}/s {row['shardwriter_mb_per_s']:.1f} MB/s | omnimask on {cpus} CPUs "
                f"{row['omnimask_samples_per_s']:.1f}/s {row['omnimask_mb_per_s']:.1f} MB/s | x{row['speedup']:.2f}",
                flush=True,
            )
    return rows


def scaling(cpu_counts: list[int], images: int) -> list[dict[str, Any]]:
    """The image job (resize to 256) on a fresh Ray instance per CPU count, after the warm-up job."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from omnimask.data.preprocess import preprocess
    from omnimask.data.ray_env import ray_session

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        files = build_inputs("image", raw, images)
        mb = sum(p.stat().st_size for p in files) / 1e6
        for cpus in cpu_counts:
            with ray_session(num_cpus=cpus):
                warm = Path(tmp) / f"warm{cpus}"
                warm.mkdir()
                fixed = warm_up(warm)
                t = time.perf_counter()
                m = preprocess("image", raw, Path(tmp) / f"out{cpus}", samples_per_shard=50, options={"resize": 256})
                wall = time.perf_counter() - t
            rows.append(
                {
                    "cpus": cpus,
                    "inputs": m.num_inputs,
                    "seconds": wall,
                    "samples_per_s": m.num_inputs / wall,
                    "mb_per_s": mb / wall,
                    "workers": m.preprocess["workers"],
                    "concurrency": m.preprocess["task_seconds"] / max(m.preprocess["seconds"], 1e-9),
                    **fixed,
                }
            )
            rows[-1]["speedup"] = rows[-1]["samples_per_s"] / rows[0]["samples_per_s"]
            print(
                f"preprocess scaling: {cpus} CPU(s): {m.num_inputs} images in {wall:.1f} s, {rows[-1]['samples_per_s']:.0f}/s, "
                f"{rows[-1]['mb_per_s']:.1f} MB/s, mean concurrency {rows[-1]['concurrency']:.2f} | x{rows[-1]['speedup']:.2f} "
                f"vs {cpu_counts[0]} CPU(s) (first job on the fresh instance: {fixed['first_job_s']:.1f} s)",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modality", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every modality's number of inputs")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--scaling", type=int, default=0, help="instead: time this many images with 1 and with 2 CPUs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = scaling([1, 2], args.scaling) if args.scaling else run(args.modality, args.scale, args.cpus)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
