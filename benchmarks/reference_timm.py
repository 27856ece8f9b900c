"""The timm layers the reference repositories take from timm rather than define: timm 0.3.2's
``vision_transformer.py`` ``Mlp`` and ``Attention`` (MAE's blocks; Point-MAE's ``models/Point_MAE.py``
defines the same two), and ``timm.models.layers`` ``drop_path`` / ``DropPath`` (Point-MAE and VideoMAE import
them). Written from their definitions; shared by the baselines so that each layer exists once.
"""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """``fc1 -> GELU -> drop -> fc2 -> drop``. ``[B, N, D] -> [B, N, D]``."""

    def __init__(self, in_features: int, hidden_features: int, *, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention with the attention matrix materialised. ``[B, N, D] -> [B, N, D]``; q, k, v
    laid out as ``[3, heads, head_dim]`` along ``qkv``'s output."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, N, d]
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)))


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth per sample: ``x [B, ...]`` zeroed for a random ``drop_prob`` share of the samples,
    the others scaled by ``1 / (1 - drop_prob)`` (timm draws ``floor(keep + U[0, 1))``)."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = (keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep_prob) * random_tensor


class DropPath(nn.Module):
    """:func:`drop_path` in training mode. ``[B, ...] -> [B, ...]``."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)
