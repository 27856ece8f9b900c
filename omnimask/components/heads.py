"""MAE decoder head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omnimask.components.layers import (
    Positions,
    QKVBias,
    blocks,
    decode_table_queries,
    init_weights,
    position_table,
)
from omnimask.core.config import ComponentSpec
from omnimask.core.indexing import predicted_rows
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import Head, MaskIndex
from omnimask.core.registry import register


@register("head", "mae_decoder")
class MAEDecoderHead(Head):
    """MAE decoder: project, add a mask token at each query position, ``depth`` blocks, predict.

    ``latent [B, 1 + N_v, E]`` (cls first, visible tokens ascending; ``[B, N_v, E]`` from an encoder
    without a cls token) -> ``pred [B, N_p, D_t]`` for the tokens at ``index.ids_predict``. The decoder
    sequence is ``[cls, visible + pos, mask_token + pos(queries)]`` (no cls row when the encoder gave
    none: VideoMAE's ``[x_vis + pos, mask_token + pos]``). With the
    hidden tokens as queries this is MAE's decoder (attention does not depend on
    the order of the sequence, only on the positions added); with a decoder
    masker it is VideoMAE V2's: queries at the decoder-visible positions only,
    of which the hidden ones are predicted. Only predicted positions go through
    the final projection, and the first block projects each query position once
    per batch (:func:`~omnimask.components.layers.decode_table_queries`). Default loss: ``mse``,
    averaged over the ``D_t`` values of each predicted token, then over tokens.
    """

    default_loss = ComponentSpec("mse")

    @dataclass
    class Config:
        dim: int = 512
        depth: int = 8
        heads: int = 16
        mlp_ratio: float = 4.0
        positions: Positions = "grid"
        """Fixed sin-cos positions, as the encoder's ``positions`` (``grid``, ``flat``, ``sinusoid``, ``grid_swapped``)."""
        embed_bias: bool = True
        """A bias on the encoder-to-decoder projection (MAE's ``decoder_embed``; VideoMAE's has none)."""
        norm_eps: float = 1e-6
        """LayerNorm epsilon."""
        qkv_bias: QKVBias = "qkv"
        """Attention projection biases: ``qkv`` (MAE), ``qv`` (VideoMAE), ``none``."""
        drop_path: float = 0.0
        """Stochastic depth of the last block, linear from 0 over the blocks."""

        def __post_init__(self) -> None:
            if self.depth < 1:
                raise ValueError(f"depth must be >= 1 (with no block the queries never see a visible token), got {self.depth}")

    def __init__(self, cfg: Config, layout: TokenLayout, encoder_dim: int, target_dim: int):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, cfg.dim, bias=cfg.embed_bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        pos = position_table(layout, cfg.positions, cfg.dim, cls_token=True)
        self.register_buffer("pos_embed", pos[None], persistent=False)
        self.blocks = blocks(
            cfg.dim, cfg.heads, cfg.depth, cfg.mlp_ratio, norm_eps=cfg.norm_eps, qkv_bias=cfg.qkv_bias, drop_path=cfg.drop_path
        )
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.pred = nn.Linear(cfg.dim, target_dim)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        x = self.embed(latent)
        positions = self.pos_embed[0, 1:]  # [N, D]
        prefix = x.shape[1] - index.ids_keep.shape[1]  # the encoder's cls row, if it has one
        context = x[:, prefix:] + F.embedding(index.ids_keep, positions)
        if prefix:
            context = torch.cat([x[:, :prefix] + self.pos_embed[:, :1], context], dim=1)
        query_table = self.mask_token[0] + positions  # [N, D]: the query row at each position
        queries = decode_table_queries(self.blocks, context, query_table, index.ids_query)
        return self.pred(self.norm(predicted_rows(queries, index.pick)))
