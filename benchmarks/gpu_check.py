"""GPU check: the base image and video recipes on one CUDA GPU in bf16, fed by the real loader.

    python -m benchmarks.gpu_check [--steps 40] [--workers 12] [--json gpu.json]     # a few minutes on one GPU
    python -m benchmarks.gpu_check --device cpu --tiny --steps 2 --workers 1        # the same code, smoke-sized, on the CPU
    python -m benchmarks.gpu_check --recipes videomae --repeats 4                    # the video loader with 4 views a clip
    python -m benchmarks.gpu_check --compile                                         # omnimask's model under trainer.compile

For ``mae_image`` (MAE ViT-B/16) and ``videomae`` (VideoMAE ViT-B, 16x4 frames), or
their tiny versions with ``--tiny``:

1. writes inputs (ImageNet-sized JPEGs; 256x256 H.264 clips) and preprocesses them
   into shards on every CPU: with the Ray Data job, or with the local process pool
   where Ray is not installed (GPU images often lack it);
2. trains the recipe's model on the real loader (``--workers`` loader processes,
   pinned memory, non-blocking copies), bf16 autocast, fused AdamW, for ``--steps``
   steps after a warm-up, with no device synchronisation inside the loop (as a
   training loop runs): the wall time a step and the share of it the host spent
   waiting for the loader (``loader share``); then the same steps over the last few
   of those batches again, the loader stopped (``replayed``: host-to-device copies
   included, loader processes gone);
3. times the same model on one batch kept on the device (compute alone) and the
   plain paper-style MAE on that batch (:mod:`benchmarks.train_step`).

With ``--compile`` omnimask's loss is compiled in steps 2 and 3, as ``trainer.compile``
does (compilation falls in the warm-up steps); the plain MAE stays as written.

Prints the card, samples/s, step time, peak memory and the loader's share; record
them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inputs import build_inputs

# recipe: (batch size on the GPU, inputs written, clip seconds)
CASES = {"mae_image": (128, 2048, None), "videomae": (16, 48, 4.0)}
PREFETCH = 4
"""Batches each loader worker prepares ahead."""
TINY = {"mae_image": ("mae_image_tiny", 8, 24, None), "videomae": ("videomae_tiny", 2, 4, 2.0)}
REPLAYED = 4
"""Fed batches kept (pinned, on the host) and stepped over again with the loader stopped."""


def loader_run(
    recipe: Any, shards: Path, batch_size: int, workers: int, steps: int, device: str, repeats: int = 1, compile: bool = False
) -> dict[str, Any]:
    """Train ``steps`` steps on the real loader, as a training loop runs: no device synchronisation inside
    the loop, so the device works through queued steps while the host waits for the next batch.
    ``loader_share``: the share of the wall time the host spent blocked on the loader.

    The warm-up lasts until every batch the workers could have prefetched has been taken (``workers *
    PREFETCH``, plus 3): until then the loader's pin-memory thread allocates new page-locked buffers
    for the batches in flight, where afterwards it reuses freed ones, as a long training run does.

    ``replayed``: ``steps`` more steps over the last :data:`REPLAYED` batches, the loader's processes
    stopped. Between the fed loop (loader running) and the step on a batch already on the device, it
    tells which costs a fed step its speed: the host-to-device copies and the step's own host work
    (replayed as slow as fed), or the loader's processes taking the CPU the host needs to launch
    the step's kernels (replayed as fast as in memory)."""
    import collections

    import torch

    from omnimask.core.collate import model_inputs
    from omnimask.core.config import DataConfig
    from omnimask.data.loader import build_loader

    cuda = device.startswith("cuda")
    model = recipe.build_model().to(device)
    loss_fn = torch.compile(model.loss) if compile else model.loss
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    loader = build_loader(
        recipe,
        data=DataConfig(path=shards, batch_size=batch_size, num_workers=workers, prefetch_factor=PREFETCH, repeats=repeats),
        seed=0,
        to_gpu=cuda,
    )
    batches = iter(loader)

    def step(batch: dict[str, Any]) -> torch.Tensor:
        batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in model_inputs(batch).items()}
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            loss = loss_fn(batch)
        loss.backward()
        opt.step()
        return loss

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    warmup = workers * PREFETCH + 3
    for _ in range(warmup):
        step(next(batches))
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    wait = 0.0
    kept: collections.deque[dict[str, Any]] = collections.deque(maxlen=REPLAYED)
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t
        loss = step(batch)
        kept.append(batch)
    sync()
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    del batches, loader  # the workers exit
    start = time.perf_counter()
    for i in range(steps):
        step(kept[i % len(kept)])
    sync()
    replayed = time.perf_counter() - start
    return {
        "samples_per_s": steps * batch_size / total,
        "step_ms": 1000 * total / steps,
        "loader_share": wait / total,
        "peak_mb": peak,
        "loss": float(loss.detach()),
        "warmup_steps": warmup,
        "replayed": {"samples_per_s": steps * batch_size / replayed, "step_ms": 1000 * replayed / steps, "batches": len(kept)},
    }


def check(
    name: str, tiny: bool, steps: int, workers: int, device: str, executor: str, repeats: int, compile: bool, tmp: Path
) -> dict[str, Any]:
    from benchmarks import train_step
    from omnimask.core.config import load_recipe
    from omnimask.core.recipe import Recipe
    from omnimask.data.preprocess import preprocess

    batch_size, count, seconds = CASES[name]
    if tiny:
        name, batch_size, count, seconds = TINY[name]
    cfg = load_recipe(name)
    raw, shards = tmp / name / "raw", tmp / name / "shards"
    raw.mkdir(parents=True)
    t = time.perf_counter()
    build_inputs(cfg.modality, raw, count, seconds)
    written = time.perf_counter() - t
    t = time.perf_counter()
    preprocess(cfg.modality, raw, shards, samples_per_shard=64 if cfg.modality == "image" else 8, executor=executor)
    prepared = time.perf_counter() - t
    recipe = Recipe.from_config(load_recipe(name, [f"data.path={shards}"]))
    repeats = repeats if cfg.modality == "video" else 1
    fed = loader_run(recipe, shards, batch_size, workers, steps, device, repeats, compile)
    precision = "bf16"
    compute = train_step.measure(name, "omnimask", device, precision, compile, batch_size, steps)
    plain = train_step.measure(name, "plain", device, precision, False, batch_size, steps)
    row = {
        "recipe": name,
        "device": device,
        "batch_size": batch_size,
        "loader_workers": workers,
        "repeats": repeats,
        "compile": compile,
        "inputs_s": written,
        "preprocess_s": prepared,
        "preprocess_executor": executor,
        "fed": fed,
        "compute_only": compute,
        "plain_mae": plain,
        "speedup_vs_plain": compute["samples_per_s"] / plain["samples_per_s"],
    }
    settings = (f", data.repeats={repeats}" if repeats > 1 else "") + (", compiled" if compile else "")
    print(
        f"{name} on {device}, bf16, batch {batch_size}, {workers} loader workers{settings}: {fed['samples_per_s']:.1f} samples/s "
        f"fed by the loader ({fed['step_ms']:.0f} ms/step, loader share {100 * fed['loader_share']:.0f}%), "
        f"{fed['replayed']['samples_per_s']:.1f}/s replaying fed batches with the loader stopped, "
        f"{compute['samples_per_s']:.1f}/s on a batch in memory, plain MAE {plain['samples_per_s']:.1f}/s "
        f"(x{row['speedup_vs_plain']:.2f}); peak memory {compute['peak_mb']:.0f} MB vs plain {plain['peak_mb']:.0f} MB",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--tiny", action="store_true", help="the tiny recipes (a smoke run)")
    ap.add_argument("--recipes", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--repeats", type=int, default=1, help="video: data.repeats of the fed loop (views a decoded clip)")
    ap.add_argument("--compile", action="store_true", help="compile omnimask's loss (trainer.compile); the plain MAE stays eager")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from contextlib import nullcontext

    import torch

    video_batch = TINY["videomae"][1] if args.tiny else CASES["videomae"][0]
    if "videomae" in args.recipes and video_batch % args.repeats:
        ap.error(f"--repeats {args.repeats} must divide the video batch ({video_batch})")  # before any work
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu for a smoke run")
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    try:
        import ray  # noqa: F401  (only whether Ray imports)

        executor = "ray"
    except ImportError:
        executor = "processes"
    print(f"device: {card}; torch {torch.__version__}; {os.cpu_count()} CPUs; preprocessing on {executor}", flush=True)
    if executor == "ray":
        from omnimask.data.ray_env import ray_session
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ray_session() if executor == "ray" else nullcontext():
        for name in args.recipes:
            try:
                rows.append(check(name, args.tiny, args.steps, args.workers, args.device, executor, args.repeats, args.compile, Path(tmp)))
            except Exception as e:  # one recipe's failure (a compiler error, say) must not cost the others' device time
                traceback.print_exc()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # an out-of-memory error leaves cached blocks behind
                rows.append({"recipe": name, "error": f"{type(e).__name__}: {str(e)[:2000]}"})
                print(f"{name}: FAILED, {type(e).__name__} (traceback above); going on", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"card": card, "torch": torch.__version__, "rows": rows}, indent=2))
    if any("error" in row for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
