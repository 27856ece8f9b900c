"""Micro-benchmarks behind the training-step choices in ``components/layers.py`` and ``train/module.py``.

    python -m benchmarks.micro [--repeat 20]

- attention, forward + backward, for the tiny MAE decoder's and a base encoder's shapes: the fused
  ``scaled_dot_product_attention`` vs the explicit product, fp32 and bf16 (why ``layers.attention`` takes
  the explicit product for bf16 on the CPU);
- a decoder block over ``[64, 65, 128]`` computing every row vs the last 48 only (``decode_queries``);
- one AdamW step over the tiny MAE's parameters: per-tensor loop, foreach, fused;
- farthest point sampling of 64 centres in one cloud of 1024 points (the point-cloud loader's main cost):
  the torch loop, a numpy loop over an ``[N, 3]`` difference and ``einsum``, and omnimask's numpy loop over
  split coordinates in preallocated buffers;
- the image loader's per-sample stages (MAE ViT-B recipe) right after each decode, as a loader worker runs
  them: decode + augment, tokenize, mask, target (contract checks included); the same stages back to back
  on one decoded image; and a batch of 64 decoded first, then tokenized, masked and targeted;
- single calls right after a decode: a numpy/torch crossing, a count, a seeded numpy Generator vs
  ``seeding.uniform_words`` (why the loader keeps masks in numpy and draws mask noise from SHAKE-128).

Each figure is the median of ``--repeat`` timed calls after warm-up, in milliseconds; the loader stages are
means over ``10 x --repeat`` samples, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ATTENTION_SHAPES = {"tiny MAE decoder [64, 4, 65, 32]": (64, 4, 65, 32), "ViT-B encoder, 75% masked [16, 12, 50, 64]": (16, 12, 50, 64)}


def median_ms(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def attention_rows(repeat: int) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    def explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v

    rows = []
    for label, shape in ATTENTION_SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            row: dict[str, Any] = {"what": f"attention fwd+bwd {label}", "dtype": str(dtype).replace("torch.", "")}
            for name, fn in (("fused", F.scaled_dot_product_attention), ("explicit", explicit)):
                q, k, v = (torch.randn(*shape, dtype=dtype, requires_grad=True) for _ in range(3))
                row[name] = median_ms(lambda: fn(q, k, v).sum().backward(), repeat)
            rows.append(row)
    return rows


def last_rows(repeat: int) -> dict[str, Any]:
    import torch

    from omnimask.components.layers import Block

    block = Block(128, 4)
    x = torch.randn(64, 65, 128, requires_grad=True)
    return {
        "what": "decoder block fwd+bwd [64, 65, 128]",
        "dtype": "float32",
        "all rows": median_ms(lambda: block(x).sum().backward(), repeat),
        "last 48 rows": median_ms(lambda: block(x, last=48).sum().backward(), repeat),
    }


def adamw_rows(repeat: int) -> dict[str, Any]:
    import torch

    from omnimask.core.config import load_recipe
    from omnimask.core.recipe import Recipe

    model = Recipe.from_config(load_recipe("mae_image_tiny")).build_model()
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    row: dict[str, Any] = {"what": f"AdamW step, tiny MAE ({sum(p.numel() for p in params) / 1e6:.1f}M parameters)", "dtype": "float32"}
    for name, kw in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)
        row[name] = median_ms(opt.step, repeat)
    return row


def fps_row(repeat: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from omnimask.modalities.pointcloud.geometry import _fps_numpy, farthest_point_sample

    def rowwise(points: np.ndarray, k: int) -> np.ndarray:
        idx = np.zeros(k, dtype=np.int64)
        dist = np.full(len(points), np.inf, dtype=points.dtype)
        for i in range(1, k):
            diff = points - points[idx[i - 1]]
            dist = np.minimum(dist, np.einsum("ij,ij->i", diff, diff))
            idx[i] = dist.argmax()
        return idx

    cloud = np.random.default_rng(0).standard_normal((1024, 3)).astype(np.float32)
    pair = torch.from_numpy(np.stack([cloud, cloud]))  # B = 2 takes the torch loop
    if not np.array_equal(rowwise(cloud, 64), _fps_numpy(cloud, 64, 0)):
        raise AssertionError("the FPS variants disagree")
    return {
        "what": "FPS, 64 of 1024 points, one cloud",
        "dtype": "float32",
        "torch loop (2 clouds, halved)": median_ms(lambda: farthest_point_sample(pair, 64), repeat) / 2,
        "[N, 3] + einsum": median_ms(lambda: rowwise(cloud, 64), repeat),
        "split coordinates (omnimask)": median_ms(lambda: _fps_numpy(cloud, 64, 0), repeat),
    }


def after_decode(decode: Callable[[int], Any], samples: int, calls: dict[str, Callable[[Any, Any], Any]]) -> dict[str, float]:
    """Mean microseconds of each call made alone right after a decode (``samples`` decodes each), on a numpy
    mask and its tensor: what the first call of a stage pays with the decoder's caches flushed."""
    import numpy as np
    import torch

    array = np.zeros(196, dtype=bool)
    array[:147] = True
    tensor = torch.from_numpy(array.copy())
    out = {}
    for name, call in calls.items():
        total = 0.0
        for i in range(samples):
            decode(i)
            t = time.perf_counter()
            call(array, tensor)
            total += time.perf_counter() - t
        out[name] = 1e6 * total / samples
    return out


def loader_stage_rows(samples: int) -> list[dict[str, Any]]:
    """Per-sample microseconds (means over ``samples``) of the image pipeline's stages."""
    import tempfile

    import numpy as np
    import torch

    from benchmarks.inputs import build_jpegs
    from omnimask.core.config import load_recipe
    from omnimask.core.contracts import check_mask, check_target, check_tokens
    from omnimask.core.recipe import Recipe
    from omnimask.core.seeding import derive_seed, uniform_words
    from omnimask.data.loader import SamplePipeline

    recipe = Recipe.from_config(load_recipe("mae_image"))
    pipeline, layout = SamplePipeline(recipe, 0), recipe.tokenizer.layout
    with tempfile.TemporaryDirectory() as tmp:
        build_jpegs(Path(tmp), 8)
        members = [{"jpg": f.read_bytes()} for f in sorted(Path(tmp).rglob("*.jpg"))]
    clock = {"decode": 0.0, "tokenize": 0.0, "mask": 0.0, "target": 0.0}

    def rest(i: int, image: Any, timed: bool) -> None:
        t0 = time.perf_counter()
        tokens = check_tokens(recipe.tokenizer, recipe.tokenizer(image)).values
        t1 = time.perf_counter()
        mask = check_mask(recipe.masker, recipe.masker(layout, derive_seed(0, 0, str(i), "mask")), layout)
        t2 = time.perf_counter()
        if pipeline.target_in_loader:  # else the model gathers it on the device
            check_target(recipe.target, recipe.target(tokens, mask), mask)
        if timed:
            clock["tokenize"] += t1 - t0
            clock["mask"] += t2 - t1
            clock["target"] += time.perf_counter() - t2

    def decode(i: int) -> Any:
        return pipeline.decode(members[i % len(members)], derive_seed(0, 0, str(i), "decode"))

    for i in range(samples):  # interleaved, as a worker runs them
        t = time.perf_counter()
        image = decode(i)
        clock["decode"] += time.perf_counter() - t
        rest(i, image, True)
    interleaved = {k: 1e6 * v / samples for k, v in clock.items()}
    hot = 1e6 * median_ms(lambda: rest(0, image, False), samples) / 1000
    crossing = after_decode(
        decode,
        samples,
        {
            "torch.from_numpy": lambda a, t: torch.from_numpy(a),
            "Tensor.numpy": lambda a, t: t.numpy(),
            "np.count_nonzero": lambda a, t: np.count_nonzero(a),
            "Tensor.sum": lambda a, t: int(t.sum()),
            "numpy Generator": lambda a, t: np.random.default_rng(12345),
            "uniform_words": lambda a, t: uniform_words(196, 12345),
        },
    )

    def interleaved_pass() -> None:
        for i in range(samples):
            rest(i, decode(i), False)

    def phased_pass() -> None:
        for start in range(0, samples, 64):
            images = [decode(i) for i in range(start, min(start + 64, samples))]
            for j, im in enumerate(images):
                rest(start + j, im, False)

    per_sample = {"interleaved": float("inf"), "batch decoded first": float("inf")}
    for _ in range(3):  # in turn, the best of 3 each
        for name, fn in (("interleaved", interleaved_pass), ("batch decoded first", phased_pass)):
            t = time.perf_counter()
            fn()
            per_sample[name] = min(per_sample[name], 1e6 * (time.perf_counter() - t) / samples)
    return [
        {
            "what": "image pipeline stages after each decode (us a sample)",
            "dtype": "uint8",
            **interleaved,
            "tokenize+mask+target back to back": hot,
        },
        {"what": "one call right after a decode, on a [196] bool mask (us)", "dtype": "bool", **crossing},
        {"what": "image pipeline without timers, us a sample", "dtype": "uint8", **per_sample},
    ]


def run(repeat: int = 20) -> list[dict[str, Any]]:
    rows = attention_rows(repeat) + [last_rows(repeat), adamw_rows(repeat), fps_row(repeat)] + loader_stage_rows(10 * repeat)
    for row in rows:
        figures = ", ".join(f"{k} {v:.2f}" for k, v in row.items() if k not in ("what", "dtype"))
        print(f"micro {row['what']} ({row['dtype']}): {figures}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = run(args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
