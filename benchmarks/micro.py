"""Micro-benchmarks behind the training-step choices in ``models/layers.py`` and ``models/module.py``.

    python -m benchmarks.micro [--repeat 20]

- attention, forward + backward, for the tiny MAE decoder's and a base encoder's shapes: the fused
  ``scaled_dot_product_attention`` vs the explicit product, fp32 and bf16 (why ``layers.attention`` takes
  the explicit product for bf16 on the CPU);
- a decoder block over ``[64, 65, 128]`` computing every row vs the last 48 only (``decode_queries``);
- one AdamW step over the tiny MAE's parameters: per-tensor loop, foreach, fused.

Each figure is the median of ``--repeat`` timed calls after warm-up, in milliseconds.
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
                row[name] = median_ms(lambda: fn(q, k, v).sum().backward(), repeat)  # noqa: B023
            rows.append(row)
    return rows


def last_rows(repeat: int) -> dict[str, Any]:
    import torch

    from omnimask.models.layers import Block

    block = Block(128, 4)
    x = torch.randn(64, 65, 128, requires_grad=True)
    return {"what": "decoder block fwd+bwd [64, 65, 128]", "dtype": "float32",
            "all rows": median_ms(lambda: block(x).sum().backward(), repeat),
            "last 48 rows": median_ms(lambda: block(x, last=48).sum().backward(), repeat)}


def adamw_rows(repeat: int) -> dict[str, Any]:
    import torch

    from omnimask.config import load_recipe
    from omnimask.models.recipe import Recipe

    model = Recipe.from_config(load_recipe("mae_image_tiny")).build_model()
    params = [p for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    row: dict[str, Any] = {"what": f"AdamW step, tiny MAE ({sum(p.numel() for p in params) / 1e6:.1f}M parameters)",
                           "dtype": "float32"}
    for name, kw in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)
        row[name] = median_ms(opt.step, repeat)
    return row


def run(repeat: int = 20) -> list[dict[str, Any]]:
    rows = attention_rows(repeat) + [last_rows(repeat), adamw_rows(repeat)]
    for row in rows:
        figures = ", ".join(f"{k} {v:.2f} ms" for k, v in row.items() if k not in ("what", "dtype"))
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
