"""Image tokenizer: non-overlapping square patches (ViT/MAE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.components.pixels import IMAGENET_MEAN, IMAGENET_STD, PixelTokenizer, check_frame
from omnimask.core.interfaces import TokenLayout
from omnimask.core.registry import register


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B, (H/p)*(W/p), p*p*C]``, values ordered (row, col, channel) as in MAE."""
    b, h, w, c = images.shape
    gh, gw = h // patch, w // patch
    x = images.reshape(b, gh, patch, gw, patch, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * gw, patch * patch * c)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, N, p*p*C]`` -> ``[B, H, W, C]``."""
    b, _, d = tokens.shape
    gh, gw = grid
    c = d // (patch * patch)
    x = tokens.reshape(b, gh, gw, patch, patch, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * patch, gw * patch, c)


@register("tokenizer", "image_patches")
class ImagePatchTokenizer(PixelTokenizer):
    """``[H, W, 3]`` uint8 image -> uint8 tokens ``[N, p*p*3]`` on a ``(H/p, W/p)`` grid.

    Tokens stay uint8 through the loader; :meth:`prepare` scales to [0, 1] and
    normalises per colour channel on the device (:class:`PixelTokenizer`).
    """

    @dataclass
    class Config:
        image_size: int = 224
        patch_size: int = 16
        mean: tuple[float, float, float] = IMAGENET_MEAN
        std: tuple[float, float, float] = IMAGENET_STD

        def __post_init__(self) -> None:
            if self.patch_size <= 0 or self.image_size % self.patch_size:
                raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")

    def __init__(self, cfg: Config):
        self.image_size = cfg.image_size
        self.patch_size = cfg.patch_size
        g = cfg.image_size // cfg.patch_size
        self.layout = TokenLayout(grid=(g, g), token_dim=cfg.patch_size * cfg.patch_size * 3)
        super().__init__(self.layout.token_dim, cfg.mean, cfg.std)

    def __call__(self, sample: np.ndarray | torch.Tensor) -> torch.Tensor:
        image = check_frame(sample, (self.image_size, self.image_size, 3))
        g, p = self.layout.grid[0], self.patch_size
        patches = image.reshape(g, p, g, p, 3).transpose(0, 2, 1, 3, 4)  # same order as patchify()
        return torch.from_numpy(np.ascontiguousarray(patches).reshape(g * g, p * p * 3))

    def detokenize(self, tokens: torch.Tensor, coords: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Tokens ``[B, N, D]`` (0-255 scale) -> images ``[B, 3, H, W]`` in [0, 1]."""
        images = unpatchify(tokens.float(), self.layout.grid, self.patch_size)
        return (images / 255.0).clamp(0, 1).permute(0, 3, 1, 2)
