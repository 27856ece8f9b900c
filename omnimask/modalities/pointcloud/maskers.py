"""Point-MAE's block masker: the groups nearest to a random centre."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from omnimask.components.maskers import check_ratio
from omnimask.core.interfaces import Masker, TokenLayout
from omnimask.core.registry import register
from omnimask.core.seeding import rng


@register("masker", "point_block")
class PointBlockMasker(Masker):
    """Hides the ``int(ratio * G)`` groups whose centres are nearest to one randomly chosen centre
    (Point-MAE's ``_mask_center_block``; default ratio 0.6). Needs the token coordinates."""

    @dataclass
    class Config:
        ratio: float = 0.6

        def __post_init__(self) -> None:
            check_ratio(self.ratio)

    def __init__(self, cfg: Config):
        self.ratio = cfg.ratio

    def num_masked(self, layout: TokenLayout) -> int:
        return int(layout.num_tokens * self.ratio)

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> torch.Tensor:
        if coords is None:
            raise ValueError("point_block masking needs the token coordinates (a tokenizer that returns coords)")
        n = layout.num_tokens
        centre = int(rng(seed, "point_block").integers(n))
        dist = (coords.float() - coords[centre].float()).pow(2).sum(-1)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.argsort(dist, stable=True)[: self.num_masked(layout)]] = True
        return mask
