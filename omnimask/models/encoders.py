"""ViT encoder over visible tokens only (MAE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from omnimask.modalities.base import TokenLayout
from omnimask.models.base import Encoder, MaskIndex
from omnimask.models.layers import Block, gather_tokens, init_weights, position_grid, sincos_pos_embed
from omnimask.registry import register

VIT_SIZES = {  # name: (dim, depth, heads)
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}


@register("encoder", "vit")
class ViTEncoder(Encoder):
    """Linear token embedding + fixed sin-cos positions + cls token + pre-norm blocks.

    ``tokens [B, N, D]`` -> ``latent [B, 1 + N_v, E]``: the cls token first, then the
    visible tokens in ascending token order. Hidden tokens never enter the encoder.
    """

    @dataclass
    class Config:
        size: Literal["tiny", "small", "base", "large", "huge"] = "base"
        dim: Optional[int] = None
        """Override the size's width."""
        depth: Optional[int] = None
        """Override the size's number of blocks."""
        heads: Optional[int] = None
        """Override the size's number of attention heads."""
        mlp_ratio: float = 4.0
        positions: Literal["grid", "flat"] = "grid"
        """Sin-cos positions over the token grid's axes (MAE), or over the flattened token index (VideoMAE)."""

    def __init__(self, cfg: Config, layout: TokenLayout):
        super().__init__()
        dim, depth, heads = VIT_SIZES[cfg.size]
        self.dim = dim = cfg.dim or dim
        depth, heads = cfg.depth or depth, cfg.heads or heads
        self.embed = nn.Linear(layout.token_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = sincos_pos_embed(position_grid(layout, cfg.positions), dim, cls_token=True)
        self.register_buffer("pos_embed", pos[None], persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads, cfg.mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        init_weights(self)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        visible = gather_tokens(tokens, index.ids_keep)
        pos = gather_tokens(self.pos_embed[:, 1:].expand(tokens.shape[0], -1, -1), index.ids_keep)
        x = self.embed(visible) + pos
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
