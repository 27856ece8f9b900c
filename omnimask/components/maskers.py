"""Maskers that work on any token layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from omnimask.core.interfaces import Masker, TokenLayout
from omnimask.core.registry import register
from omnimask.core.seeding import uniform_words


def check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")


def random_mask(num_tokens: int, num_masked: int, seed: int) -> np.ndarray:
    """Boolean ``[N]`` with exactly ``num_masked`` True, uniformly at random.

    MAE's per-sample shuffle: argsort of uniform noise, the first
    ``N - num_masked`` indices stay visible. The noise is 32-bit words of
    :func:`omnimask.core.seeding.uniform_words` (ties, rare, go to the lower index).
    """
    order = np.argsort(uniform_words(num_tokens, seed, "random_mask"), kind="stable")
    mask = np.zeros(num_tokens, dtype=bool)
    mask[order[num_tokens - num_masked :]] = True
    return mask


@register("masker", "random")
class RandomMasker(Masker):
    """Uniform random masking. ``count: keep`` (MAE, AudioMAE) hides ``N - int(N * (1 - ratio))``
    tokens; ``count: mask`` (Point-MAE) hides ``int(N * ratio)``."""

    @dataclass
    class Config:
        ratio: float = 0.75
        """Share of tokens hidden."""
        count: Literal["keep", "mask"] = "keep"
        """Which side of the split is rounded down: the kept tokens (MAE) or the hidden ones (Point-MAE)."""

        def __post_init__(self) -> None:
            check_ratio(self.ratio)

    def __init__(self, cfg: Config):
        self.ratio, self.count = cfg.ratio, cfg.count

    def num_masked(self, layout: TokenLayout) -> int:
        n = layout.num_tokens
        return int(n * self.ratio) if self.count == "mask" else n - int(n * (1 - self.ratio))

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        return random_mask(layout.num_tokens, self.num_masked(layout), seed)
