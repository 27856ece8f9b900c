"""Audio maskers on a ``(time, frequency)`` token grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.components.maskers import check_ratio, random_mask
from omnimask.core.interfaces import Masker, TokenLayout
from omnimask.core.registry import register
from omnimask.core.seeding import derive_seed


@register("masker", "time_freq")
class TimeFrequencyMasker(Masker):
    """AudioMAE's 2-D masking: hide whole time rows and whole frequency columns of the grid.

    ``int(T * (1 - time_ratio))`` rows and ``int(F * (1 - freq_ratio))`` columns are
    kept at random; a token is visible only where a kept row meets a kept column,
    so ``T * F - kept_rows * kept_columns`` tokens are hidden (417 of 512 with
    AudioMAE's defaults 0.7 / 0.3 on its 64 x 8 grid).
    """

    @dataclass
    class Config:
        time_ratio: float = 0.7
        """Share of time rows hidden (AudioMAE's ``mask_t_prob``)."""
        freq_ratio: float = 0.3
        """Share of frequency columns hidden (``mask_f_prob``)."""

        def __post_init__(self) -> None:
            check_ratio(self.time_ratio)
            check_ratio(self.freq_ratio)

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def _kept(self, layout: TokenLayout) -> tuple[int, int]:
        if len(layout.grid) != 2:
            raise ValueError(f"time/frequency masking needs a (time, frequency) token grid, got {layout.grid}")
        t, f = layout.grid
        kept = int(t * (1 - self.cfg.time_ratio)), int(f * (1 - self.cfg.freq_ratio))
        if min(kept) < 1:
            raise ValueError(f"time_ratio/freq_ratio {self.cfg.time_ratio}/{self.cfg.freq_ratio} keep no row or column of {layout.grid}")
        return kept

    def num_masked(self, layout: TokenLayout) -> int:
        kt, kf = self._kept(layout)
        return layout.num_tokens - kt * kf

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        t, f = layout.grid
        kt, kf = self._kept(layout)
        rows = random_mask(t, t - kt, derive_seed(seed, "time"))
        cols = random_mask(f, f - kf, derive_seed(seed, "frequency"))
        return (rows[:, None] | cols[None, :]).reshape(-1)
