"""Every benchmark in one invocation, each figure beside its baseline: ``results.json`` and ``results.md``.

    python -m benchmarks.run [--quick] [--only preprocess loader train scaling] [--out benchmarks/results]

Sections (each module runs alone too, see its docstring):

- ``preprocess`` (:mod:`benchmarks.preprocess`): the Ray Data job per modality vs a
  single-process ``webdataset.ShardWriter`` loop doing the same encode;
- ``loader`` (:mod:`benchmarks.loader_image`, :mod:`benchmarks.loader_media`): samples/s
  per loader worker, with tokenize + mask + target, vs the reference-style pipeline
  and vs decode alone;
- ``train`` (:mod:`benchmarks.train_step`): step throughput and peak memory of each
  tiny and base recipe vs its plain, paper-style twin (:mod:`benchmarks.references`), fp32 and
  bf16 (on a CPU with bf16 instructions), eager and compiled (MAE tiny);
- ``scaling`` (:mod:`benchmarks.preprocess`, :mod:`benchmarks.train_scaling`): 1 vs 2
  CPUs for preprocessing, 1 vs 2 Ray Train workers for training;
- ``micro`` (:mod:`benchmarks.micro`): attention kernels, the query-only decoder block, AdamW variants.

``--quick`` runs every section on tiny inputs (about three minutes; the figures
are then too small to mean much). The full run takes about 20 minutes on
2 cores (19-23 minutes in three runs on 2026-12-05; more on a CPU with bf16 instructions, which adds bf16 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import markdown

SECTIONS = ("preprocess", "loader", "train", "scaling", "micro")
MEDIA = ("video", "audio", "pointcloud", "graph", "protein")


def machine() -> dict[str, Any]:
    import torch

    from omnimask.train.worker import cpu_has_bf16

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_has_bf16(),
    }


def preprocess_section(quick: bool) -> list[dict[str, Any]]:
    from benchmarks import preprocess

    return preprocess.run(list(preprocess.CASES), scale=0.03 if quick else 1.0, cpus=2)


def loader_section(quick: bool) -> list[dict[str, Any]]:
    from benchmarks import loader_image, loader_media

    rows = loader_image.measure(48 if quick else 1024, (1,), 2 if quick else 60, 8 if quick else 64, 2 if quick else 6)
    args = Namespace(
        clips=6 if quick else 48,
        seconds=2.0 if quick else None,
        workers=[1],
        batches=1 if quick else 10,
        batch_size=2 if quick else 8,
        repeats=2 if quick else 4,
    )
    from omnimask.data.ray_env import ray_session

    with tempfile.TemporaryDirectory() as tmp:
        with ray_session():
            prepared = {modality: loader_media.prepare(modality, args, Path(tmp)) for modality in MEDIA}
        for modality in MEDIA:  # Ray stopped: loader workers fork from this process
            rows += loader_media.bench(modality, args, *prepared[modality])
    return rows


def train_section(quick: bool) -> list[dict[str, Any]]:
    from benchmarks import lockstep, train_step
    from omnimask.train.worker import cpu_has_bf16

    if quick:
        return train_step.run(["mae_image_tiny", "esm_mlm_tiny"], batch_size=8, steps=2) + [
            {"interleaved": train_step.interleaved("mae_image_tiny", batch_size=8, steps=2)},
            {"as_run": lockstep.as_run("mae_image_tiny", steps=2, batch_size=8, compile=False)},
        ]
    tiny = [name for name in train_step.CASES if name.endswith("_tiny")]
    rows = []
    for name in train_step.CASES:  # the tiny ones twice per side, alternating (cheap, and the noisiest)
        rows += train_step.run([name], rounds=2 if name in tiny else 1)
    if cpu_has_bf16():  # elsewhere bf16 products are emulated: seconds a step, and nothing a user would run
        rows += train_step.run(["mae_image_tiny", "videomae_tiny", "audiomae_tiny"], precisions=("bf16",), rounds=2)
    rows += train_step.run(["mae_image_tiny"], compile=True)
    rows.append({"as_run": lockstep.as_run("mae_image_tiny")})
    rows.append({"interleaved": train_step.interleaved("mae_image_tiny")})
    return rows


def scaling_section(quick: bool) -> list[dict[str, Any]]:
    from benchmarks import preprocess, train_scaling

    rows = [{"kind": "preprocess", **r} for r in preprocess.scaling([1, 2], 60 if quick else 2400)]
    rows += [{"kind": "train", **r} for r in train_scaling.run("mae_image_tiny", 4 if quick else 40, inputs=96 if quick else None)]
    return rows


def micro_section(quick: bool) -> list[dict[str, Any]]:
    from benchmarks import micro

    return micro.run(repeat=1 if quick else 20)


RUNNERS: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "preprocess": preprocess_section,
    "loader": loader_section,
    "train": train_section,
    "scaling": scaling_section,
    "micro": micro_section,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny inputs: checks that everything runs")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "sections": {},
        "seconds": {},
    }
    for section in args.only:
        t = time.perf_counter()
        print(f"== {section}", flush=True)
        results["sections"][section] = RUNNERS[section](args.quick)
        results["seconds"][section] = round(time.perf_counter() - t, 1)
        (out / "results.json").write_text(json.dumps(results, indent=2))  # after each section: a crash keeps the rest
    (out / "results.md").write_text(markdown(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
