"""Deliberately broken components, named by dotted path in tests: each breaks one contract."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from omnimask.components.maskers import RandomMasker, random_mask
from omnimask.components.targets import PixelTarget
from omnimask.core.interfaces import TokenLayout


class WrongCountMasker(RandomMasker):
    """Says it hides ``num_masked`` tokens but hides one more on odd seeds."""

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        mask = super().__call__(layout, seed, coords)
        if seed % 2:
            mask[np.flatnonzero(~mask)[0]] = True
        return mask


class RoundingMasker(RandomMasker):
    """Hides ``round(N * ratio)`` tokens while ``num_masked`` says ``N - int(N * (1 - ratio))``: the two agree at
    ratio 0.75 on every grid check-plugin tries, and disagree at other ratios."""

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        return random_mask(layout.num_tokens, round(layout.num_tokens * self.ratio), seed)


class IntMaskMasker(RandomMasker):
    """Returns 0/1 integers instead of booleans."""

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        return super().__call__(layout, seed, coords).astype(np.int64)


class WrongShapeTarget(PixelTarget):
    """Returns every token's values, not only the hidden ones'."""

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return tokens


class WrongDimTarget(PixelTarget):
    """Its ``dim`` disagrees with what ``finalize`` returns: the head predicts ``dim`` values."""

    @property
    def dim(self) -> int:
        return self.tokenizer.layout.token_dim // 2
