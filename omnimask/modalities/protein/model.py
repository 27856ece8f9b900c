"""ESM-2's transformer over token ids, and its masked-language-model head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from omnimask.components.layers import blocks, init_weights, rotary_tables
from omnimask.core.config import ComponentSpec
from omnimask.core.indexing import select_rows
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import Encoder, Head, MaskIndex
from omnimask.core.registry import register

ESM2_SIZES = {  # name: (dim, depth, heads) of the ESM-2 models (Lin et al. 2023)
    "8M": (320, 6, 20),
    "35M": (480, 12, 20),
    "150M": (640, 30, 20),
    "650M": (1280, 33, 20),
}


@register("encoder", "esm")
class ESMEncoder(Encoder):
    """Token ids ``[B, N, 1]`` (every token, the hidden ones corrupted by the masker) ->
    ``latent [B, N, E]`` at every position, padding included (heads select with ``index.mask``).

    ESM-2: embedding of the 33-token alphabet (``<pad>`` embeds to zero), token dropout
    (``<mask>`` embeddings zeroed and the rest scaled by ``(1 - 0.15 * 0.8) / (1 - share of
    <mask> in the sequence)``), pre-norm blocks with rotary positions, final LayerNorm.
    ``positions: learned`` adds ESM-1b's learned table instead of rotating.
    """

    @dataclass
    class Config:
        size: Literal["8M", "35M", "150M", "650M"] = "35M"
        dim: int | None = None
        depth: int | None = None
        heads: int | None = None
        mlp_ratio: float = 4.0
        positions: Literal["rotary", "learned"] = "rotary"
        token_dropout: bool = True
        mask_id: int = 32
        """Id of ``<mask>`` (token dropout)."""
        pad_id: int = 1
        """Id of ``<pad>``."""
        vocab_size: int = 33
        norm_eps: float = 1e-5
        """LayerNorm epsilon (ESM-2's ``ESM1bLayerNorm`` is torch's LayerNorm: 1e-5)."""

    def __init__(self, cfg: Config, layout: TokenLayout):
        super().__init__()
        dim, depth, heads = ESM2_SIZES[cfg.size]
        self.dim, depth, self.heads = cfg.dim or dim, cfg.depth or depth, cfg.heads or heads
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, self.dim, padding_idx=cfg.pad_id)
        self.pos = nn.Embedding(layout.num_tokens, self.dim) if cfg.positions == "learned" else None
        if self.pos is None:  # one table for the longest sequence, sliced per batch: computing it in the step
            # costs a few ops eagerly, and torch.compile fuses the cos and sin into their consumer, once per
            # element of q and k rather than once per position
            cos, sin = rotary_tables(layout.num_tokens, self.dim // self.heads)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        self.blocks = blocks(self.dim, self.heads, depth, cfg.mlp_ratio, norm_eps=cfg.norm_eps)
        self.norm = nn.LayerNorm(self.dim, eps=cfg.norm_eps)
        init_weights(self)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[cfg.pad_id].zero_()

    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        ids = tokens[..., 0]
        n = ids.shape[1]
        valid = index.valid if index.valid is not None else torch.ones_like(ids, dtype=torch.bool)
        x = self.embed(ids)
        if self.cfg.token_dropout:
            is_mask = ids == self.cfg.mask_id
            observed = is_mask.sum(1) / valid.sum(1).clamp(min=1)
            x = x.masked_fill(is_mask[..., None], 0.0) * ((1 - 0.15 * 0.8) / (1 - observed))[:, None, None].to(x.dtype)
        rotary = None
        if self.pos is not None:
            x = x + self.pos.weight[:n]
        else:
            rotary = (self.rotary_cos[:n], self.rotary_sin[:n])
        x = x * valid[..., None].to(x.dtype)
        attn_mask = valid[:, None, None, :]
        for block in self.blocks:
            x = block(x, attn_mask, rotary)
        return self.norm(x)


@register("head", "lm_head")
class LMHead(Head):
    """Masked-LM head (ESM's ``RobertaLMHead``): ``latent [B, N, E]`` -> logits ``[M, V]`` at the hidden
    positions (``index.mask``, row-major): linear, GELU, LayerNorm, then a projection to the
    vocabulary whose weight is the encoder's token embedding (``tie: true``) plus a bias.
    Default loss: ``cross_entropy`` against the true ids."""

    default_loss = ComponentSpec("cross_entropy")

    @dataclass
    class Config:
        tie: bool = True
        """Share the output projection with the encoder's token embedding (ESM)."""
        norm_eps: float = 1e-5
        """LayerNorm epsilon (ESM-2's ``RobertaLMHead``: 1e-5)."""

    def __init__(self, cfg: Config, layout: TokenLayout, encoder_dim: int, target_dim: int):
        super().__init__()
        self.cfg = cfg
        self.dense = nn.Linear(encoder_dim, encoder_dim)
        self.norm = nn.LayerNorm(encoder_dim, eps=cfg.norm_eps)
        self.weight = nn.Parameter(torch.empty(target_dim, encoder_dim))
        self.bias = nn.Parameter(torch.zeros(target_dim))
        init_weights(self)
        nn.init.normal_(self.weight, std=0.02)

    def bind(self, encoder: Encoder) -> None:
        if not self.cfg.tie:
            return
        embed = getattr(encoder, "embed", None)
        if not isinstance(embed, nn.Embedding) or embed.weight.shape != self.weight.shape:
            raise ValueError(
                f"lm_head cannot tie its projection {list(self.weight.shape)} to {type(encoder).__name__}'s "
                "token embedding; set model.head.tie=false"
            )
        self.weight = embed.weight

    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        x = select_rows(latent, index.mask, index.num_masked)  # [M, E]
        return F.linear(self.norm(F.gelu(self.dense(x))), self.weight, self.bias)
