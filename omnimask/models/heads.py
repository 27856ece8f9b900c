"""MAE decoder head and its loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from omnimask.modalities.base import TokenLayout
from omnimask.models.base import Head, MaskIndex
from omnimask.models.layers import (
    Block,
    decode_table_queries,
    init_weights,
    position_grid,
    predicted_rows,
    sincos_pos_embed,
)
from omnimask.registry import register


@register("head", "mae_decoder")
class MAEDecoderHead(Head):
    """MAE decoder: project, add a mask token at each query position, ``depth`` blocks, predict.

    ``latent [B, 1 + N_v, E]`` (cls first, visible tokens ascending) ->
    ``pred [B, N_p, D_t]`` for the tokens at ``index.ids_predict``. The decoder
    sequence is ``[cls, visible + pos, mask_token + pos(queries)]``. With the
    hidden tokens as queries this is MAE's decoder (attention does not depend on
    the order of the sequence, only on the positions added); with a decoder
    masker it is VideoMAE V2's: queries at the decoder-visible positions only,
    of which the hidden ones are predicted. Only predicted positions go through
    the final projection, and the first block projects each query position once
    per batch (:func:`~omnimask.models.layers.decode_table_queries`). Loss: MSE
    averaged over the ``D_t`` values of each predicted token, then over tokens.
    """

    loss_is_sample_mean = True  # the mean over [B, N_p] tokens, the same N_p in every sample

    @dataclass
    class Config:
        dim: int = 512
        depth: int = 8
        heads: int = 16
        mlp_ratio: float = 4.0
        positions: Literal["grid", "flat"] = "grid"
        """Sin-cos positions over the token grid's axes, or over the flattened token index (VideoMAE)."""

        def __post_init__(self) -> None:
            if self.depth < 1:
                raise ValueError(f"depth must be >= 1 (with no block the queries never see a visible token), got {self.depth}")

    def __init__(self, cfg: Config, layout: TokenLayout, encoder_dim: int, target_dim: int):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        pos = sincos_pos_embed(position_grid(layout, cfg.positions), cfg.dim, cls_token=True)
        self.register_buffer("pos_embed", pos[None], persistent=False)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.pred = nn.Linear(cfg.dim, target_dim)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        x = self.embed(latent)
        positions = self.pos_embed[0, 1:]  # [N, D]
        visible = x[:, 1:] + F.embedding(index.ids_keep, positions)
        context = torch.cat([x[:, :1] + self.pos_embed[:, :1], visible], dim=1)
        query_table = self.mask_token[0] + positions  # [N, D]: the query row at each position
        queries = decode_table_queries(self.blocks, context, query_table, index.ids_query)
        return self.pred(self.norm(predicted_rows(queries, index.pick)))

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.float() - target.float()).pow(2).mean(dim=-1).mean()
