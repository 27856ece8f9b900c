"""The tiny MAE step with omnimask's attention (fused SDPA) and with the explicit product, and the plain MAE:
three sides in turn in one process, fp32 eager on the CPU (``python -m benchmarks.attention_ab [steps]``).

Which attention is faster depends on the CPU: on an AMX Xeon the fused kernel won in fp32 (on its own, as a
micro benchmark); on an AVX2-only EPYC the two were within 1% of each other over the whole step, either way
round from run to run (docs/performance.md). Run it on a new machine before changing
:func:`omnimask.components.layers.attention`."""

from __future__ import annotations

import sys
from typing import Any, Callable

import torch

import omnimask.components.layers as layers
from benchmarks.references import reference_for
from benchmarks.train_step import adamw, build, real_batch, steps_in_turn
from omnimask.components.layers import explicit_attention


def main(steps: int = 45, batch_size: int = 64) -> dict[str, float]:
    torch.manual_seed(0)
    recipe = build("mae_image_tiny", [])
    batch = real_batch(recipe, batch_size)
    ours = recipe.build_model()
    plain = reference_for(recipe, recipe.build_model())
    args = plain.args(batch)
    fused = layers.attention

    def ours_with(fn: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:
        def loss() -> torch.Tensor:
            layers.attention = fn
            try:
                return ours.loss(batch)
            finally:
                layers.attention = fused

        return loss

    losses: dict[str, Callable[[], Any]] = {
        "fused": ours_with(fused),
        "explicit": ours_with(explicit_attention),
        "plain": lambda: plain(*args),
    }
    # lr 0: the weights stay as they are, so the three sides time the same step over and over; fused AdamW on
    # every side, as in the other in-process comparison (train_step.interleaved_one)
    opts = {side: adamw(plain if side == "plain" else ours, recipe, fused=True, lr=0.0) for side in losses}
    seconds = steps_in_turn(losses, opts, steps)
    ms = {side: 1000 * s / steps for side, s in seconds.items()}
    for side in losses:
        print(f"{side:9s} {ms[side]:6.1f} ms a step  x{ms['plain'] / ms[side]:.3f} the plain MAE")
    return ms


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
