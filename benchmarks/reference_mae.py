"""A straightforward MAE, written the way the paper's code is: the baseline of the training-step benchmark.

The mask is drawn inside the model (``random_masking``: argsort of per-token
noise), attention is computed explicitly (``softmax(q k^T / sqrt(d)) v``, timm
0.3.2's ``Attention`` that MAE pins), the decoder runs over every token with the
visible ones unshuffled back into place, predicts every token, and the loss is
the per-token MSE weighted by the mask. The target (raw, per-token normalised or
per-channel normalised pixels) is computed from the float input inside the
step, over every token.

Parameter names equal :class:`omnimask.models.recipe.MaskedModel`'s for the ViT
encoder and the MAE decoder head, so ``load_state_dict(model.state_dict())``
gives the reference the same weights, and with noise that reproduces a batch's
mask it computes the same loss (``tests/test_benchmarks.py`` checks this).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from benchmarks.references import Reference
from omnimask.models.layers import apply_rotary
from omnimask.models.recipe import MaskedModel, Recipe


class ExplicitAttention(nn.Module):
    """``[B, N, D] -> [B, N, D]`` with the attention matrix materialised (timm 0.3.2; fair-esm's
    ``MultiheadAttention`` with ``key_padding`` ``[B, N]``, True = padding, and rotary tables)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        return self.proj((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d))


class PlainBlock(nn.Module):
    """Pre-norm transformer block. ``[B, N, D] -> [B, N, D]``."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ExplicitAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_padding, rotary)
        return x + self.mlp(self.norm2(x))


def stack_like(blocks: nn.ModuleList) -> nn.ModuleList:
    """Plain blocks of the sizes of omnimask's ``blocks`` (:class:`omnimask.models.layers.Block`)."""
    first = blocks[0]
    dim, hidden = first.mlp[0].in_features, first.mlp[0].out_features
    return nn.ModuleList(PlainBlock(dim, first.attn.heads, hidden) for _ in blocks)


class PlainEncoder(nn.Module):
    def __init__(self, token_dim: int, blocks: nn.ModuleList, pos: torch.Tensor):
        super().__init__()
        dim = pos.shape[-1]
        self.embed = nn.Linear(token_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", pos.clone(), persistent=False)
        self.blocks = stack_like(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)


class PlainDecoder(nn.Module):
    def __init__(self, encoder_dim: int, blocks: nn.ModuleList, target_dim: int, pos: torch.Tensor):
        super().__init__()
        dim = pos.shape[-1]
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", pos.clone(), persistent=False)
        self.blocks = stack_like(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, target_dim)


class PlainMAE(Reference):
    """``forward(x [B, N, D] float tokens, noise [B, N] or None) -> scalar loss``."""

    def __init__(self, encoder: PlainEncoder, head: PlainDecoder, num_visible: int,
                 make_target: Callable[[torch.Tensor], torch.Tensor], prepare: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.num_visible = num_visible
        self.make_target = make_target
        self.prepare = prepare

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[torch.Tensor, ...]:
        """Float tokens; with ``same_mask``, noise whose argsort keeps the batch's visible tokens first,
        ascending, as the loader's mask orders them."""
        x = self.prepare(batch["tokens"])
        if not same_mask:
            return (x,)
        n = batch["mask"].shape[1]
        return x, batch["mask"].float() + torch.arange(n, device=x.device) / (2 * n)

    def random_masking(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep the tokens with the smallest noise: ``x_visible [B, N_v, D]``, ``mask [B, N]`` (1 = hidden),
        ``ids_restore [B, N]``."""
        b, n, d = x.shape
        keep = self.num_visible
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)
        mask[:, :keep] = 0
        return visible, torch.gather(mask, 1, ids_restore), ids_restore

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        enc, dec = self.encoder, self.head
        if noise is None:
            noise = torch.rand(x.shape[:2], device=x.device)
        h = enc.embed(x) + enc.pos_embed[:, 1:]
        h, mask, ids_restore = self.random_masking(h, noise)
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(h.shape[0], -1, -1)
        h = torch.cat([cls, h], dim=1)
        for block in enc.blocks:
            h = block(h)
        h = dec.embed(enc.norm(h))
        b, n = ids_restore.shape
        mask_tokens = dec.mask_token.expand(b, n + 1 - h.shape[1], -1)
        full = torch.cat([h[:, 1:], mask_tokens], dim=1)
        full = torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
        h = torch.cat([h[:, :1], full], dim=1) + dec.pos_embed
        for block in dec.blocks:
            h = block(h)
        pred = dec.pred(dec.norm(h))[:, 1:]
        loss = (pred - self.make_target(x)).pow(2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


def plain_mae(recipe: Recipe, model: MaskedModel) -> PlainMAE:
    """The plain MAE of ``model``, a recipe's ``vit`` encoder and ``mae_decoder`` head with a random or tube
    masker, sized and positioned as ``model``. The mask is drawn inside, with as many visible tokens as the
    recipe's masker leaves: MAE's ``int(N * (1 - ratio))`` is that count for random masking, but a tube
    masker hides ``int(ratio * tokens a frame)`` in each frame (VideoMAE's ``TubeMaskingGenerator``), which
    for ViT-B VideoMAE leaves 160 of 1568 tokens visible, not 156."""
    enc, head = model.encoder, model.head
    encoder = PlainEncoder(recipe.tokenizer.layout.token_dim, enc.blocks, enc.pos_embed)
    decoder = PlainDecoder(enc.dim, head.blocks, recipe.target.dim, head.pos_embed)
    layout = recipe.tokenizer.layout
    num_visible = layout.num_tokens - recipe.masker.num_masked(layout)
    return PlainMAE(encoder, decoder, num_visible, target_of(recipe), recipe.tokenizer.prepare)


def target_of(recipe: Recipe) -> Callable[[torch.Tensor], torch.Tensor]:
    """The recipe's target computed from float tokens inside the model, as the papers' code does it."""
    from omnimask.modalities.targets import normalize_per_token

    name, tokenizer, target = recipe.config.model.target.name, recipe.tokenizer, recipe.target
    if name == "pixels":
        return lambda x: x
    if name == "norm_pixels":
        eps = target.eps
        return lambda x: normalize_per_token(x, eps)[0]
    return lambda x: target.finalize(tokenizer.restore(x))  # VideoMAE: un-normalise, then per-channel statistics
