"""A ring-shaped masker for 2-D token grids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.modalities.base import Masker, TokenLayout
from omnimask.seeding import rng


@dataclass
class RingConfig:
    ratio: float = 0.75
    """Share of the tokens hidden (MAE's rounding: ``N - int(N * (1 - ratio))``)."""
    min_radius: float = 0.15
    """Smallest ring radius, as a share of the grid's shorter side."""
    max_radius: float = 0.5
    """Largest ring radius, as a share of the grid's shorter side."""

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        if not 0.0 <= self.min_radius <= self.max_radius:
            raise ValueError("need 0 <= min_radius <= max_radius")


class RingMasker(Masker):
    """Hides an annulus: the ``num_masked`` tokens of an ``(H, W)`` grid whose distance to a random
    centre is closest to a random radius. Exactly ``N - int(N * (1 - ratio))`` tokens, a pure
    function of the seed (ties broken by token index)."""

    Config = RingConfig

    def __init__(self, cfg: RingConfig):
        self.cfg = cfg

    def num_masked(self, layout: TokenLayout) -> int:
        n = layout.num_tokens
        return n - int(n * (1 - self.cfg.ratio))

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> torch.Tensor:
        if len(layout.grid) != 2:
            raise ValueError(f"the ring masker needs a 2-D token grid, got {layout.grid}")
        h, w = layout.grid
        g = rng(seed, "ring")
        cy, cx = g.uniform(0, h), g.uniform(0, w)
        radius = g.uniform(self.cfg.min_radius, self.cfg.max_radius) * min(h, w)
        y, x = np.mgrid[0:h, 0:w]
        off_ring = np.abs(np.hypot(y + 0.5 - cy, x + 0.5 - cx) - radius).reshape(-1)
        mask = np.zeros(h * w, dtype=bool)
        mask[np.argsort(off_ring, kind="stable")[: self.num_masked(layout)]] = True
        return torch.from_numpy(mask)
