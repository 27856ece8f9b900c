"""Transformer building blocks shared by encoders and heads."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnimask.core.interfaces import TokenLayout


def sincos_pos_embed(grid: tuple[int, ...], dim: int, cls_token: bool = False) -> torch.Tensor:
    """Fixed sin-cos position embedding ``[(1 if cls) + prod(grid), dim]`` for an n-D grid.

    Each grid axis gets ``dim / len(grid)`` channels (half sin, half cos, MAE's
    frequencies ``1 / 10000^(2i/d)``), the last axis first: for a 2-D grid the
    first half encodes the column and the second the row, channel for channel as
    MAE's ``get_2d_sincos_pos_embed``. The cls position is all zeros, as in MAE.
    """
    axes = len(grid)
    if dim % (2 * axes):
        raise ValueError(f"embedding dim {dim} must be divisible by {2 * axes} for a {axes}-D grid")
    per_axis = dim // axes
    omega = 1.0 / 10000 ** (np.arange(per_axis // 2, dtype=np.float64) / (per_axis / 2))
    coords = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid], indexing="ij")
    parts = []
    for c in reversed(coords):
        out = np.outer(c.reshape(-1), omega)
        parts += [np.sin(out), np.cos(out)]
    return with_cls_row(np.concatenate(parts, axis=1), cls_token)


def sinusoid_table(n: int, dim: int, cls_token: bool = False) -> torch.Tensor:
    """The 1-D table of "Attention is all you need" as VideoMAE builds it (``get_sinusoid_encoding_table``):
    ``[(1 if cls) + n, dim]``, channel ``2i`` = ``sin(p / 10000^(2i/d))`` and ``2i + 1`` the cosine of the same
    angle, interleaved (MAE's 1-D table puts all sines first: the same values in another channel order)."""
    if dim % 2:
        raise ValueError(f"embedding dim {dim} must be even")
    angles = np.arange(n, dtype=np.float64)[:, None] / np.power(10000, 2 * (np.arange(dim) // 2) / dim)
    angles[:, 0::2], angles[:, 1::2] = np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])
    return with_cls_row(angles, cls_token)


def with_cls_row(table: np.ndarray, cls_token: bool) -> torch.Tensor:
    """``table [N, D]`` as float32, with an all-zero cls row first when ``cls_token``."""
    if cls_token:
        table = np.concatenate([np.zeros((1, table.shape[1])), table], axis=0)
    return torch.from_numpy(table).float()


Positions = Literal["grid", "flat", "sinusoid", "grid_swapped"]


def position_table(layout: TokenLayout, positions: str, dim: int, cls_token: bool = False) -> torch.Tensor:
    """The fixed position table ``[(1 if cls) + N, dim]`` of a layout's tokens in their raster order.

    - ``grid``: MAE's n-D sin-cos table over the token grid;
    - ``flat``: MAE's table over the flat token index (1-D, sines then cosines);
    - ``sinusoid``: VideoMAE's 1-D table over the flat index (:func:`sinusoid_table`, interleaved);
    - ``grid_swapped``: AudioMAE's. Its ``PatchEmbed_org`` names the (time, frequency) grid
      ``patch_hw = (frequency, time)``, so the 2-D table is built over the grid with its two axes swapped
      and its rows are added in the tokens' (time, frequency) raster order: token ``k`` gets the cell
      ``(k // T, k % T)`` of an ``F x T`` grid, not its own (time, frequency) cell. A quirk of the
      reference, which its released weights were trained with; ``grid`` is the geometric table.
    """
    if positions == "grid":
        return sincos_pos_embed(layout.grid, dim, cls_token)
    if positions == "flat":
        return sincos_pos_embed((layout.num_tokens,), dim, cls_token)
    if positions == "sinusoid":
        return sinusoid_table(layout.num_tokens, dim, cls_token)
    if positions == "grid_swapped":
        if len(layout.grid) != 2:
            raise ValueError(f"positions 'grid_swapped' needs a 2-D token grid, got {layout.grid}")
        return sincos_pos_embed(layout.grid[::-1], dim, cls_token)
    raise ValueError(f"positions must be grid, flat, sinusoid or grid_swapped, got {positions!r}")


def rotary_tables(n: int, head_dim: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position tables ``(cos, sin)``, each ``[n, head_dim]``, for positions ``0..n-1`` (RoFormer,
    as ESM-2: frequencies ``1 / 10000^(2i/d)``, each repeated for the two halves of the head)."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head dimension, got {head_dim}")
    inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    freqs = torch.outer(torch.arange(n, device=device, dtype=torch.float32), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [..., N, head_dim]`` by the tables of :func:`rotary_tables` (``rotate_half`` form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v``: ``q [B, H, N_q, d]``, ``k, v [B, H, N, d]`` -> ``[B, H, N_q, d]``;
    ``attn_mask`` (bool, True = may attend) broadcasts to ``[B, H, N_q, N]``.

    Fused ``scaled_dot_product_attention`` everywhere except bf16/fp16 on the CPU,
    where its flash kernel's backward is several times slower than the explicit product
    (in fp32 the fused kernel wins); ``python -m benchmarks.micro`` measures both.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        return explicit_attention(q, k, v, attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`attention` as two matrix products and a softmax (shapes as there)."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


QKVBias = Literal["qkv", "qv", "none"]


class Attention(nn.Module):
    """Multi-head self-attention (:func:`attention`). ``[B, N, D] -> [B, N, D]``.

    ``qkv_bias``: biases on the query, key and value projections (``"qkv"``: timm's ViT, MAE); on the
    query and value only (``"qv"``: VideoMAE's ``q_bias``/``v_bias``, the key's fixed at zero), or none
    (``"none"``: Point-MAE). ``attn_mask [B, 1, 1, N]`` (bool, True = may attend) hides padding keys;
    ``rotary`` (the tables of :func:`rotary_tables`) rotates queries and keys by their positions;
    ``last`` computes the outputs of the last ``last`` rows only (``[B, last, D]``), every
    row still a key and value; ``qkv [B, N, 3D]`` in place of ``x`` (None): the projections
    :meth:`project` of ``x``, made by a caller that has some of them already (:func:`decode_table_queries`).
    """

    def __init__(self, dim: int, heads: int, *, qkv_bias: QKVBias = "qkv"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        if qkv_bias not in ("qkv", "qv", "none"):
            raise ValueError(f"qkv_bias must be 'qkv', 'qv' or 'none', got {qkv_bias!r}")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias == "qkv")
        self.qv_bias = qkv_bias == "qv"
        if self.qv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The query, key and value projections ``[..., D] -> [..., 3D]``."""
        if not self.qv_bias:  # a plain flag: hasattr on a Module raises and catches an AttributeError every call
            return self.qkv(x)
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        return F.linear(x, self.qkv.weight, bias)

    def forward(
        self,
        x: torch.Tensor | None,
        attn_mask: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        last: int | None = None,
        qkv: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if qkv is None:
            qkv = self.project(x)
        b, n, d = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        # split on the [B, N, 3, H, d] view and transpose each part to [B, H, N, d]: the backward then
        # stacks the three gradients straight into qkv's layout, where a permute of the whole
        # (timm's) stacks them head-major and copies them back: one more copy of the gradient in every block
        q, k, v = (t.transpose(1, 2) for t in qkv.reshape(b, n, 3, self.heads, d // self.heads).unbind(2))
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if last is not None:
            q = q[:, :, n - last :]
        out = attention(q, k, v, attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, q.shape[2], d))


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch ``x [B, ...]``: each sample's branch is dropped with
    probability ``rate`` and the kept ones scaled by ``1 / (1 - rate)`` (timm's ``DropPath``)."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - rate)
    return x * keep.div_(1 - rate)


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Each block's stochastic-depth rate: linear from 0 to ``rate`` over ``depth`` blocks (timm's rule,
    ``torch.linspace(0, rate, depth)`` as every reference writes it)."""
    return [float(r) for r in torch.linspace(0, rate, depth)]


class Block(nn.Module):
    """Pre-norm transformer block (timm/MAE layout). ``[B, N, D] -> [B, N, D]``;
    ``norm_eps``: the LayerNorms' epsilon (MAE, VideoMAE: 1e-6; torch's default 1e-5: Point-MAE, ESM-2);
    ``qkv_bias``: see :class:`Attention`; ``drop_path``: stochastic depth on both residual branches
    (training only). ``attn_mask`` and ``rotary`` go to :class:`Attention`. With ``last`` it returns the last
    ``last`` rows only, ``[B, last, D]``, exactly as ``block(x)[:, -last:]`` but without
    computing the other rows' projections and MLP (a decoder's final block, whose
    visible rows nobody reads). ``qkv [B, N, 3D]``, where given, is ``self.qkv_of(x)`` made by the
    caller (:func:`decode_table_queries`: projections shared between samples)."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float = 4.0, *, norm_eps: float = 1e-6, qkv_bias: QKVBias = "qkv", drop_path: float = 0.0
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = drop_path

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        last: int | None = None,
        qkv: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.attn(self.norm1(x) if qkv is None else None, attn_mask, rotary, last, qkv)
        x = (x if last is None else x[:, x.shape[1] - last :]) + drop_path(out, self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)

    def qkv_of(self, x: torch.Tensor) -> torch.Tensor:
        """The attention's query, key and value projections of the normalised rows: ``[..., D] -> [..., 3D]``."""
        return self.attn.project(self.norm1(x))


def blocks(
    dim: int, heads: int, depth: int, mlp_ratio: float = 4.0, *, norm_eps: float = 1e-6, qkv_bias: QKVBias = "qkv", drop_path: float = 0.0
) -> nn.ModuleList:
    """``depth`` :class:`Block` s whose stochastic depth grows linearly to ``drop_path`` (:func:`drop_path_rates`)."""
    return nn.ModuleList(
        Block(dim, heads, mlp_ratio, norm_eps=norm_eps, qkv_bias=qkv_bias, drop_path=rate) for rate in drop_path_rates(drop_path, depth)
    )


def decode_queries(
    blocks: nn.ModuleList,
    x: torch.Tensor,
    num_queries: int,
    pos: torch.Tensor | None = None,
    first_qkv: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a decoder's ``blocks`` over ``x [B, L, D]`` whose last ``num_queries`` rows are the queries;
    returns their outputs ``[B, num_queries, D]``. ``pos [B, L, D]`` (Point-MAE) is added before every
    block; ``first_qkv [B, L, 3D]``: the first block's projections, made by the caller (not with ``pos``,
    which would change the rows after they were projected). The final block computes the query rows only
    (the only ones read)."""
    if pos is not None and first_qkv is not None:
        raise ValueError("first_qkv cannot be combined with pos: the first block's rows change after projecting")
    for i, block in enumerate(blocks):
        if pos is not None:
            x = x + pos
        x = block(x, last=num_queries if i == len(blocks) - 1 else None, qkv=first_qkv if i == 0 else None)
    return x[:, x.shape[1] - num_queries :]


def decode_table_queries(blocks: nn.ModuleList, context: torch.Tensor, query_table: torch.Tensor, query_ids: torch.Tensor) -> torch.Tensor:
    """:func:`decode_queries` over ``context [B, L, D]`` followed by the queries ``query_table[query_ids]``
    (``query_table [N, D]``: MAE's mask token plus the position embedding of each position;
    ``query_ids [B, Q]``) -> their outputs ``[B, Q, D]``.

    A query row depends on its position alone, and so do the first block's projections of it: they
    are made once per position (``[N, 3D]``) and looked up, not once per query of every sample (with
    MAE's 75% masking, three quarters of the first block's projection work). Equal to
    ``decode_queries(blocks, cat([context, query_table[query_ids]]), Q)`` in exact arithmetic.
    """
    if not len(blocks):
        raise ValueError("a decoder needs at least one block")
    first = blocks[0]
    x = torch.cat([context, F.embedding(query_ids, query_table)], dim=1)
    table = first.qkv_of(query_table)  # [N, 3D]
    # looked up in float32 at least: the lookup's backward adds each query's gradient into its row one
    # at a time, which in bfloat16 (CPU autocast) rounds at every addition, worse as the batch grows
    shared = F.embedding(query_ids, table.to(torch.promote_types(table.dtype, torch.float32))).to(table.dtype)
    qkv = torch.cat([first.qkv_of(context), shared], dim=1)
    return decode_queries(blocks, x, query_ids.shape[1], first_qkv=qkv)


def init_weights(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform linears with zero bias, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
