"""Preprocessing throughput with 1 vs 2 (or more) Ray CPUs on the same input.

    python benchmarks/preprocess_scaling.py [--images 600] [--cpus 1 2] [--resize 256]

Writes ImageNet-sized JPEGs, then runs the preprocessing Ray Data job on a fresh
local Ray instance per CPU count (decode + validate + resize + re-encode each
image, shards written by the tasks) and prints inputs/s and MB/s of input.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--samples-per-shard", type=int, default=50)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from loader_image import build_jpegs

    from omnimask.pipelines.preprocess import preprocess

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        build_jpegs(raw, args.images)
        mb = sum(p.stat().st_size for p in raw.rglob("*.jpg")) / 1e6
        rates = {}
        for cpus in args.cpus:
            t = time.perf_counter()
            m = preprocess("image", raw, Path(tmp) / f"out{cpus}", samples_per_shard=args.samples_per_shard,
                           options={"resize": args.resize}, num_cpus=cpus)
            wall = time.perf_counter() - t
            job = m.preprocess["seconds"]
            rates[cpus] = m.num_inputs / job
            print(f"cpus={cpus}: {m.num_inputs} inputs in {job:.1f}s job time ({wall:.1f}s with Ray start-up): "
                  f"{rates[cpus]:.0f} inputs/s, {mb / job:.1f} MB/s; {m.preprocess['workers']} worker processes, "
                  f"mean concurrency {m.preprocess['task_seconds'] / job:.2f}", flush=True)
        base = rates[args.cpus[0]]
        for cpus in args.cpus[1:]:
            print(f"speed-up {args.cpus[0]} -> {cpus} CPUs: x{rates[cpus] / base:.2f}")


if __name__ == "__main__":
    main()
