"""Point-MAE's encoder, decoder head and Chamfer loss: a mini-PointNet embeds each group, an MLP embeds its
centre, and the positions are added before every transformer block."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnimask.components.layers import QKVBias, blocks, decode_queries, init_weights
from omnimask.core.config import ComponentSpec
from omnimask.core.indexing import gather_tokens, predicted_rows
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import Encoder, Head, Loss, MaskIndex
from omnimask.core.registry import register
from omnimask.modalities.pointcloud.geometry import chamfer_distance


class MiniPointNet(nn.Module):
    """Point-MAE's group embedding: ``[M, S, 3]`` -> ``[M, dim]``. Shared MLP 3 -> 128 -> 256, max-pool,
    the pooled feature concatenated to every point, 512 -> 512 -> dim, max-pool."""

    def __init__(self, dim: int):
        super().__init__()
        self.first = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1))
        self.second = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, dim, 1))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        f = self.first(groups.transpose(1, 2))  # [M, 256, S]
        f = torch.cat([f.amax(dim=2, keepdim=True).expand_as(f), f], dim=1)
        return self.second(f).amax(dim=2)


def position_mlp(dim: int) -> nn.Module:
    """Centre ``[..., 3]`` -> position embedding ``[..., dim]`` (Point-MAE: 3 -> 128 -> dim, GELU)."""
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))


def require_coords(index: MaskIndex, who: str) -> torch.Tensor:
    if index.coords is None:
        raise ValueError(f"{who} needs token coordinates (the point_groups tokenizer gives them)")
    return index.coords


@dataclass
class PointTransformerConfig:
    """What Point-MAE's encoder and decoder share: transformer sizes, LayerNorm epsilon (torch's default
    1e-5 in Point-MAE), attention biases (``qkv_bias=False`` there) and stochastic depth (``drop_path_rate``
    0.1 in ``cfgs/pretrain.yaml``, linear from 0 over each stack's blocks)."""

    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-5
    qkv_bias: QKVBias = "none"
    drop_path: float = 0.1


def point_blocks(cfg: PointTransformerConfig) -> nn.ModuleList:
    return blocks(cfg.dim, cfg.heads, cfg.depth, cfg.mlp_ratio, norm_eps=cfg.norm_eps, qkv_bias=cfg.qkv_bias, drop_path=cfg.drop_path)


@register("encoder", "pointmae")
class PointMAEEncoder(Encoder):
    """Groups ``[B, N, S * 3]`` -> ``latent [B, N_v, E]`` (visible groups in ascending order,
    no cls token). Point-MAE: 12 blocks of 384, 6 heads."""

    @dataclass
    class Config(PointTransformerConfig):
        embed_all: bool = True
        """Embed every group, hidden ones included, and keep the visible ones after (Point-MAE's
        ``MaskTransformer.forward``): in training the mini-PointNet's BatchNorm then takes its statistics
        over all groups, as the reference's. False embeds the visible groups only: less work, other
        batch statistics."""

    def __init__(self, cfg: Config, layout: TokenLayout):
        super().__init__()
        self.dim = cfg.dim
        self.embed_all = cfg.embed_all
        self.embed = MiniPointNet(cfg.dim)
        self.pos = position_mlp(cfg.dim)
        self.blocks = point_blocks(cfg)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        init_weights(self)

    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        coords = require_coords(index, "the pointmae encoder")
        b, n_vis = index.ids_keep.shape
        if self.embed_all:
            x = self.embed(tokens.reshape(b * tokens.shape[1], -1, 3)).reshape(b, -1, self.dim)
            x = gather_tokens(x, index.ids_keep)  # [B, N_v, E]
        else:
            visible = gather_tokens(tokens, index.ids_keep)  # [B, N_v, S * 3]
            x = self.embed(visible.reshape(b * n_vis, -1, 3)).reshape(b, n_vis, self.dim)
        pos = self.pos(gather_tokens(coords, index.ids_keep))
        for block in self.blocks:
            x = block(x + pos)
        return self.norm(x)


@register("head", "pointmae_decoder")
class PointMAEDecoderHead(Head):
    """``latent [B, N_v, E]`` -> predicted groups ``[B, N_p, S * 3]`` (re-centred coordinates) for the
    tokens at ``index.ids_predict``: mask tokens at the query centres, ``depth`` blocks with positions
    added before each, a linear layer to ``S x 3``. Default loss: ``chamfer``."""

    default_loss = ComponentSpec("chamfer")

    @dataclass
    class Config(PointTransformerConfig):
        depth: int = 4

    def __init__(self, cfg: Config, layout: TokenLayout, encoder_dim: int, target_dim: int):
        super().__init__()
        self.embed = nn.Identity() if encoder_dim == cfg.dim else nn.Linear(encoder_dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = position_mlp(cfg.dim)
        self.blocks = point_blocks(cfg)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.pred = nn.Linear(cfg.dim, target_dim)
        init_weights(self)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        coords = require_coords(index, "the pointmae_decoder head")
        b, n_query = index.ids_query.shape
        x = torch.cat([self.embed(latent), self.mask_token.expand(b, n_query, -1)], dim=1)
        pos = self.pos(torch.cat([gather_tokens(coords, index.ids_keep), gather_tokens(coords, index.ids_query)], dim=1))
        return self.pred(self.norm(predicted_rows(decode_queries(self.blocks, x, n_query, pos), index.pick)))


@register("loss", "chamfer")
class ChamferLoss(Loss):
    """Chamfer distance (squared L2) per group, averaged over groups (Point-MAE's ``ChamferDistanceL2``):
    ``pred, target [B, N_p, S * 3]`` (or ``[M, S * 3]``), each row a group of ``S`` points -> scalar."""

    is_sample_mean = True  # the mean over [B, N_p] groups of equal weight, the same N_p in every sample

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return chamfer_distance(pred.reshape(-1, pred.shape[-1] // 3, 3), target.reshape(-1, target.shape[-1] // 3, 3)).mean()
