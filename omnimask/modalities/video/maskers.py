"""Video maskers on a ``(T, H, W)`` token grid: VideoMAE's tube masking and VideoMAE V2's running cell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.components.maskers import check_ratio, random_mask
from omnimask.core.interfaces import Masker, TokenLayout
from omnimask.core.registry import register
from omnimask.core.seeding import rng


def grid_3d(layout: TokenLayout, masker: str) -> tuple[int, int, int]:
    if len(layout.grid) != 3:
        raise ValueError(f"{masker} masking needs a (time, height, width) token grid, got {layout.grid}")
    return layout.grid


@register("masker", "tube")
class TubeMasker(Masker):
    """VideoMAE tube masking: one random 2-D mask of ``int(ratio * H * W)`` patches, the same
    in every time slot. Hides ``T * int(ratio * H * W)`` tokens (default ratio 0.9)."""

    @dataclass
    class Config:
        ratio: float = 0.9
        """Share of the patches of a time slot hidden (the same in every slot)."""

        def __post_init__(self) -> None:
            check_ratio(self.ratio)

    def __init__(self, cfg: Config):
        self.ratio = cfg.ratio

    def num_masked(self, layout: TokenLayout) -> int:
        t, h, w = grid_3d(layout, "tube")
        return t * int(self.ratio * h * w)

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        t, h, w = grid_3d(layout, "tube")
        frame = random_mask(h * w, int(self.ratio * h * w), seed)
        return np.tile(frame, t)


def running_cell_masks(grid: tuple[int, int, int], ratio: float) -> np.ndarray:
    """VideoMAE V2's running-cell maps: boolean ``[4, T * H * W]``, one per start phase (True = hidden).

    A 2x2 cell holds ``int(4 * ratio)`` hidden places followed by visible ones
    (``[1, 1, 0, 0]`` at ratio 0.5), read from a pointer that moves one place per
    time slot; the cell is tiled over the ``H x W`` grid.
    """
    t, h, w = grid
    hidden = int(4 * ratio)
    queue = np.array([True] * hidden + [False] * (4 - hidden))
    maps = []
    for phase in range(4):
        slots = []
        for step in range(1, t + 1):  # V2 moves the pointer before reading the first slot
            cell = queue[(np.arange(4) + phase + step) % 4].reshape(2, 2)
            slots.append(np.tile(cell, (h // 2, w // 2)).reshape(-1))
        maps.append(np.concatenate(slots))
    return np.stack(maps)


@register("masker", "running_cell")
class RunningCellMasker(Masker):
    """VideoMAE V2's decoder mask (use it as ``model.decoder_masker``): a 2x2 cell pattern,
    ``[1, 1, 0, 0]`` at ratio 0.5, shifted by one place per time slot; one of its four
    phases is drawn per sample. Hides ``int(4 * ratio) / 4`` of every time slot.

    Each place of a cell is hidden in ``int(4 * ratio)`` of every 4 consecutive
    slots, so with a number of time slots divisible by 4 every position is seen
    by the decoder equally often, and the hidden-and-decoded count of a tube mask is
    the same for every sample (batches need no padding).
    """

    @dataclass
    class Config:
        ratio: float = 0.5

        def __post_init__(self) -> None:
            if not 0 < int(4 * self.ratio) < 4:
                raise ValueError(f"ratio must hide 1 to 3 of the 4 places of a 2x2 cell (0.25 <= ratio < 1), got {self.ratio}")

    def __init__(self, cfg: Config):
        self.ratio = cfg.ratio
        self._maps: dict[tuple[int, ...], np.ndarray] = {}

    def _phases(self, layout: TokenLayout) -> np.ndarray:
        grid = grid_3d(layout, "running-cell")
        if grid[1] % 2 or grid[2] % 2:
            raise ValueError(f"running-cell masking needs an even height and width of the token grid, got {grid}")
        if grid not in self._maps:
            self._maps[grid] = running_cell_masks(grid, self.ratio)
        return self._maps[grid]

    def num_masked(self, layout: TokenLayout) -> int:
        return int(self._phases(layout)[0].sum())

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        phases = self._phases(layout)
        return phases[int(rng(seed, "running_cell").integers(4))].copy()
