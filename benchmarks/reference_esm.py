"""ESM-2 written the way fair-esm's code is (Lin et al. 2023, ``esm.ESM2``): a baseline of the training-step benchmark.

The masking (BERT's 80/10/10) happens in the data collator, as in every masked-LM
codebase, so the model gets the corrupted ids and one label per position (-100
where nothing is predicted). The embedding gets token dropout and padding
zeroed. The pre-norm blocks use explicit attention with rotary positions and the
padding keys masked. The LM head (dense, GELU, LayerNorm, tied projection)
computes logits at every position, and the cross-entropy ignores the -100
labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.reference_mae import stack_like
from benchmarks.references import Reference
from omnimask.models.layers import rotary_tables
from omnimask.models.recipe import MaskedModel, Recipe


class PlainESMEncoder(nn.Module):
    def __init__(self, vocab: int, pad_id: int, dim: int, blocks: nn.ModuleList):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=pad_id)
        self.blocks = stack_like(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)


class PlainLMHead(nn.Module):
    def __init__(self, dim: int, vocab: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.weight = nn.Parameter(torch.empty(vocab, dim))
        self.bias = nn.Parameter(torch.zeros(vocab))


class PlainESM(Reference):
    """``forward(ids [B, N] int64, labels [B, N] int64, -100 = not predicted) -> scalar loss``."""

    def __init__(self, recipe: Recipe, model: MaskedModel):
        super().__init__()
        enc = model.encoder
        if enc.pos is not None:
            raise ValueError("the plain ESM mirrors rotary positions (ESM-2), not learned ones")
        self.cfg = cfg = enc.cfg
        self.encoder = PlainESMEncoder(cfg.vocab_size, cfg.pad_id, enc.dim, enc.blocks)
        self.head = PlainLMHead(enc.dim, cfg.vocab_size)
        if model.head.cfg.tie:
            self.head.weight = self.encoder.embed.weight

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The collator's output either way: corrupted ids, and the true ids as labels at the hidden positions."""
        ids = batch["tokens"][..., 0].long()
        labels = torch.full_like(ids, -100)
        labels[batch["mask"]] = batch["target"].long().reshape(-1)
        return ids, labels

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        enc, head, cfg = self.encoder, self.head, self.cfg
        padding = ids == cfg.pad_id
        x = enc.embed(ids)
        if cfg.token_dropout:
            is_mask = ids == cfg.mask_id
            observed = is_mask.sum(-1).to(x.dtype) / (~padding).sum(-1)
            x = x.masked_fill(is_mask[..., None], 0.0) * ((1 - 0.15 * 0.8) / (1 - observed))[:, None, None]
        x = x * (1 - padding[..., None].to(x.dtype))
        rotary = rotary_tables(ids.shape[1], x.shape[-1] // enc.blocks[0].attn.heads, x.device)
        for block in enc.blocks:
            x = block(x, padding, rotary)
        x = enc.norm(x)
        logits = F.linear(head.norm(F.gelu(head.dense(x))), head.weight, head.bias)  # [B, N, V]: every position
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
