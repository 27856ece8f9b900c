"""Training throughput with 1 vs 2 Ray Train workers: ``omnimask pretrain`` of a tiny recipe, end to end.

    python -m benchmarks.train_scaling [--recipe mae_image_tiny] [--steps 40] [--workers 1 2]

The recipe's demo inputs are preprocessed once; each run is a real
``pretrain`` (Ray Train, DDP over gloo, one loader worker per rank, each rank
asking Ray for one CPU, so two ranks use the machine's two cores) and its
samples/s are ``steps x batch x ranks / seconds`` of the fit (the run's
``summary.json``), model set-up and the first batches included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run(
    recipe: str = "mae_image_tiny", steps: int = 40, workers: tuple[int, ...] = (1, 2), inputs: int | None = None
) -> list[dict[str, Any]]:
    """Steps a second with each number of Ray Train ``workers``, on the recipe's demo inputs (``inputs`` of them;
    default: the demo's count)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from omnimask.cli.demo import DEMOS
    from omnimask.core import registry
    from omnimask.core.config import load_recipe
    from omnimask.data.preprocess import preprocess
    from omnimask.data.ray_env import ray_session
    from omnimask.train.pretrain import pretrain

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg0 = load_recipe(recipe)
        demo = DEMOS[cfg0.modality]
        raw, shards = Path(tmp) / "raw", Path(tmp) / "shards"
        registry.lookup("modality", cfg0.modality)().example_inputs(raw, inputs or demo.count)
        with ray_session():
            preprocess(cfg0.modality, raw, shards, samples_per_shard=demo.samples_per_shard)
            for n in workers:
                cfg = load_recipe(
                    recipe,
                    [
                        f"data.path={shards}",
                        f"run.dir={tmp}/runs",
                        f"scaling.num_workers={n}",
                        "scaling.cpus_per_worker=1",
                        f"trainer.max_steps={steps}",
                        f"trainer.log_every_n_steps={steps}",
                        f"trainer.checkpoint_every_n_steps={steps}",
                    ],
                )
                result = pretrain(cfg, name=f"w{n}")
                batch = cfg.data.batch_size
                rows.append(
                    {
                        "recipe": recipe,
                        "workers": n,
                        "steps": result.steps,
                        "batch_per_rank": batch,
                        "seconds": result.seconds,
                        "samples_per_s": result.steps * batch * n / result.seconds,
                    }
                )
                rows[-1]["speedup"] = rows[-1]["samples_per_s"] / rows[0]["samples_per_s"]
                print(
                    f"train scaling {recipe}: {n} worker(s): {result.steps} steps of {batch} per rank in {result.seconds:.1f} s, "
                    f"{rows[-1]['samples_per_s']:.0f} samples/s | x{rows[-1]['speedup']:.2f}",
                    flush=True,
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mae_image_tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = run(args.recipe, args.steps, tuple(args.workers))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
