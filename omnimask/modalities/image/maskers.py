"""Image maskers that use the 2-D patch grid."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.components.maskers import check_ratio
from omnimask.core.interfaces import Masker, TokenLayout
from omnimask.core.registry import register
from omnimask.core.seeding import rng


def block_mask(
    grid: tuple[int, int],
    num_masked: int,
    seed: int,
    min_patches: int = 16,
    max_patches: Optional[int] = None,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    attempts: int = 10,
) -> np.ndarray:
    """BEiT block-wise mask on a ``(H, W)`` grid with exactly ``num_masked`` hidden patches.

    Rectangles of area in ``[min_patches, max_patches]`` and aspect ratio
    (log-uniform) in ``aspect`` are placed at random until the budget is
    reached, as in BEiT. BEiT can stop a few patches short when no block fits;
    here the remainder grows the existing blocks from their border (then any
    free patch), so the count is exact. Returns boolean ``[H * W]``.
    """
    h, w = grid
    if not 0 <= num_masked <= h * w:
        raise ValueError(f"cannot mask {num_masked} of {h * w} patches")
    g = rng(seed, "block_mask")
    mask = np.zeros((h, w), dtype=bool)
    max_patches = num_masked if max_patches is None else max_patches
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    count = 0
    while count < num_masked:
        budget = min(num_masked - count, max_patches)
        added = 0
        for _ in range(attempts):
            area = g.uniform(min_patches, max(budget, min_patches))
            ratio = math.exp(g.uniform(*log_aspect))
            bh = int(round(math.sqrt(area * ratio)))
            bw = int(round(math.sqrt(area / ratio)))
            if 0 < bw < w and 0 < bh < h:
                top = int(g.integers(0, h - bh + 1))
                left = int(g.integers(0, w - bw + 1))
                new = bh * bw - int(mask[top : top + bh, left : left + bw].sum())
                if 0 < new <= budget:
                    mask[top : top + bh, left : left + bw] = True
                    added = new
                    break
        if added == 0:
            break
        count += added
    _grow(mask, num_masked - count, g)
    return mask.reshape(-1)


def _grow(mask: np.ndarray, extra: int, g: np.random.Generator) -> None:
    """Hide ``extra`` more patches, preferring free neighbours of hidden ones."""
    for _ in range(extra):
        border = np.zeros_like(mask)
        border[1:] |= mask[:-1]
        border[:-1] |= mask[1:]
        border[:, 1:] |= mask[:, :-1]
        border[:, :-1] |= mask[:, 1:]
        free = np.flatnonzero(border & ~mask)
        if free.size == 0:
            free = np.flatnonzero(~mask)
        mask.flat[free[g.integers(0, free.size)]] = True


@register("masker", "block")
class BlockMasker(Masker):
    """BEiT-style block-wise masking on a 2-D token grid (default ratio 0.4)."""

    @dataclass
    class Config:
        ratio: float = 0.4
        min_patches: int = 16
        """Smallest block area, in patches."""
        max_patches: Optional[int] = None
        """Largest block area; default: the whole budget."""
        min_aspect: float = 0.3
        """Aspect ratios are drawn log-uniformly in [min_aspect, 1 / min_aspect]."""

        def __post_init__(self) -> None:
            check_ratio(self.ratio)
            if self.min_patches < 1:
                raise ValueError(f"min_patches must be >= 1, got {self.min_patches}")
            if self.max_patches is not None and self.max_patches < self.min_patches:
                raise ValueError(f"max_patches ({self.max_patches}) must be >= min_patches ({self.min_patches})")
            if not 0.0 < self.min_aspect <= 1.0:
                raise ValueError(f"min_aspect must be in (0, 1], got {self.min_aspect}")

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def num_masked(self, layout: TokenLayout) -> int:
        return int(round(layout.num_tokens * self.cfg.ratio))

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        if len(layout.grid) != 2:
            raise ValueError(f"block masking needs a 2-D token grid, got {layout.grid}")
        c = self.cfg
        return block_mask(
            layout.grid,
            self.num_masked(layout),
            seed,
            min_patches=c.min_patches,
            max_patches=c.max_patches,
            aspect=(c.min_aspect, 1 / c.min_aspect),
        )
