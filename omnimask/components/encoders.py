"""ViT encoder over visible tokens only (MAE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from omnimask.components.layers import Positions, QKVBias, blocks, init_weights, position_table
from omnimask.core.indexing import gather_tokens
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import Encoder, MaskIndex
from omnimask.core.registry import register

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

    ``tokens [B, N, D]`` -> ``latent [B, 1 + N_v, E]``: the cls token first (``cls_token: false``, as
    VideoMAE pretrains: none, ``[B, N_v, E]``), then the visible tokens in ascending token order. Hidden
    tokens never enter the encoder.
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
        positions: Positions = "grid"
        """Fixed sin-cos positions: over the token grid's axes (``grid``, MAE), over the flat token index
        (``flat``: MAE's 1-D table; ``sinusoid``: VideoMAE's interleaved one), or AudioMAE's table built
        over the grid with its axes swapped (``grid_swapped``; see ``layers.position_table``)."""
        cls_token: bool = True
        """Prepend a learned cls token (MAE, AudioMAE); VideoMAE pretrains without one."""
        norm_eps: float = 1e-6
        """LayerNorm epsilon (MAE, VideoMAE, AudioMAE: 1e-6)."""
        qkv_bias: QKVBias = "qkv"
        """Attention projection biases: ``qkv`` (timm/MAE), ``qv`` (VideoMAE), ``none``."""
        drop_path: float = 0.0
        """Stochastic depth of the last block, linear from 0 over the blocks (MAE pretrains with 0)."""

    def __init__(self, cfg: Config, layout: TokenLayout):
        super().__init__()
        dim, depth, heads = VIT_SIZES[cfg.size]
        self.dim = dim = cfg.dim or dim
        depth, heads = cfg.depth or depth, cfg.heads or heads
        self.embed = nn.Linear(layout.token_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.cls_token else None
        pos = position_table(layout, cfg.positions, dim, cls_token=True)
        self.register_buffer("pos_embed", pos[None], persistent=False)
        self.blocks = blocks(dim, heads, depth, cfg.mlp_ratio, norm_eps=cfg.norm_eps, qkv_bias=cfg.qkv_bias, drop_path=cfg.drop_path)
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        init_weights(self)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        visible = gather_tokens(tokens, index.ids_keep)
        pos = gather_tokens(self.pos_embed[:, 1:].expand(tokens.shape[0], -1, -1), index.ids_keep)
        x = self.embed(visible) + pos
        if self.cls_token is not None:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
