"""Video tokenizer: non-overlapping tubelets of ``t x p x p`` pixels (VideoMAE's Conv3d patches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.components.pixels import IMAGENET_MEAN, IMAGENET_STD, PixelTokenizer, check_frame
from omnimask.core.interfaces import TokenLayout
from omnimask.core.registry import register


@register("tokenizer", "video_tubelets")
class VideoTubeletTokenizer(PixelTokenizer):
    """``[T, H, W, 3]`` uint8 clip -> uint8 tokens ``[N, t*p*p*3]`` on a ``(T/t, H/p, W/p)`` grid.

    Tokens are ordered (time slot, row, column); the values of a token are ordered
    (frame, row, column, channel), as VideoMAE's
    ``rearrange('c (t p0) (h p1) (w p2) -> (t h w) (p0 p1 p2) c')``. Default:
    16 frames of 224px in 2x16x16 tubelets -> an 8x14x14 grid of 1536 values.
    """

    @dataclass
    class Config:
        num_frames: int = 16
        image_size: int = 224
        patch_size: int = 16
        tubelet_size: int = 2
        """Frames per tubelet."""
        mean: tuple[float, float, float] = IMAGENET_MEAN
        std: tuple[float, float, float] = IMAGENET_STD

        def __post_init__(self) -> None:
            if self.patch_size <= 0 or self.image_size % self.patch_size:
                raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
            if self.tubelet_size <= 0 or self.num_frames % self.tubelet_size:
                raise ValueError(f"num_frames ({self.num_frames}) must be a multiple of tubelet_size ({self.tubelet_size})")

    def __init__(self, cfg: Config):
        self.num_frames, self.image_size = cfg.num_frames, cfg.image_size
        self.patch_size, self.tubelet_size = cfg.patch_size, cfg.tubelet_size
        g = cfg.image_size // cfg.patch_size
        self.layout = TokenLayout(grid=(cfg.num_frames // cfg.tubelet_size, g, g), token_dim=cfg.tubelet_size * cfg.patch_size**2 * 3)
        super().__init__(self.layout.token_dim, cfg.mean, cfg.std)

    def __call__(self, sample: np.ndarray) -> torch.Tensor:
        clip = check_frame(sample, (self.num_frames, self.image_size, self.image_size, 3))
        gt, gh, gw = self.layout.grid
        t, p = self.tubelet_size, self.patch_size
        x = clip.reshape(gt, t, gh, p, gw, p, 3).transpose(0, 2, 4, 1, 3, 5, 6)
        return torch.from_numpy(np.ascontiguousarray(x).reshape(gt * gh * gw, self.layout.token_dim))

    def clips(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of ``__call__`` for a batch: tokens ``[B, N, D]`` -> clips ``[B, T, H, W, 3]``."""
        b = tokens.shape[0]
        gt, gh, gw = self.layout.grid
        t, p = self.tubelet_size, self.patch_size
        x = tokens.reshape(b, gt, gh, gw, t, p, p, 3).permute(0, 1, 4, 2, 5, 3, 6, 7)
        return x.reshape(b, gt * t, gh * p, gw * p, 3)

    def detokenize(self, tokens: torch.Tensor, coords: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Tokens ``[B, N, D]`` (0-255 scale) -> a strip of the first frame of each time slot
        ``[B, 3, H, (T/t) * W]`` in [0, 1]."""
        frames = self.clips(tokens.float())[:, :: self.tubelet_size]  # [B, T/t, H, W, 3]
        strip = torch.cat(frames.unbind(1), dim=2)  # [B, H, (T/t) * W, 3]
        return (strip / 255.0).clamp(0, 1).permute(0, 3, 1, 2)
