"""MAE decoder head and its loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnimask.modalities.base import TokenLayout
from omnimask.models.base import Head, MaskIndex
from omnimask.models.layers import Block, gather_tokens, init_weights, sincos_pos_embed
from omnimask.registry import register


@register("head", "mae_decoder")
class MAEDecoderHead(Head):
    """MAE decoder: project, fill hidden slots with a mask token, ``depth`` blocks, predict.

    ``latent [B, 1 + N_v, E]`` (cls first, visible tokens ascending) ->
    ``pred [B, N_h, D_t]`` for the hidden tokens in ascending order. Only the
    hidden positions go through the final projection. Loss: MSE averaged over
    the ``D_t`` values of each hidden token, then over hidden tokens.
    """

    @dataclass
    class Config:
        dim: int = 512
        depth: int = 8
        heads: int = 16
        mlp_ratio: float = 4.0

    def __init__(self, cfg: Config, layout: TokenLayout, encoder_dim: int, target_dim: int):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.register_buffer("pos_embed", sincos_pos_embed(layout.grid, cfg.dim, cls_token=True)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.pred = nn.Linear(cfg.dim, target_dim)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        x = self.embed(latent)
        b, n_hidden = index.ids_hidden.shape
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(b, n_hidden, -1)], dim=1)
        tokens = gather_tokens(tokens, index.ids_restore)  # back to token order
        x = torch.cat([x[:, :1], tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        hidden = gather_tokens(x[:, 1:], index.ids_hidden)
        return self.pred(self.norm(hidden))

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.float() - target.float()).pow(2).mean(dim=-1).mean()
