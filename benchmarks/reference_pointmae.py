"""Point-MAE as its repository computes it (Pang-Yatian/Point-MAE), with the reference's own module and
parameter names: the fidelity baseline of the ``pointmae`` recipes and of the training-step benchmark.

Each piece follows one reference function (written anew here, in the reference's structure and order of
operations; nothing of omnimask's model is used):

- :class:`Encoder`: ``models/Point_MAE.py`` ``Encoder`` (the mini-PointNet: ``first_conv``, max-pool, the
  pooled feature concatenated before each point's, ``second_conv``, max-pool), over every group.
- :class:`Mlp`, :class:`Attention`, :class:`Block`, :class:`TransformerEncoder`, :class:`TransformerDecoder`:
  the classes of the same names there (explicit ``softmax(q k^T * scale) v``, ``qkv_bias=False``, torch's
  LayerNorm with its default eps 1e-5, the positions added before every block, the decoder's ``norm`` on
  its last ``return_token_num`` rows).
- :class:`DropPath`: timm's ``DropPath`` (``timm/layers/drop.py`` ``drop_path``), which the reference imports;
  the rates are ``torch.linspace(0, drop_path_rate, depth)`` per stack, as ``MaskTransformer.__init__`` and
  ``Point_MAE.__init__`` write them.
- :class:`MaskTransformer`: ``MaskTransformer`` (``_mask_center_rand``: ``int(mask_ratio * G)`` hidden
  groups per cloud, a numpy ``0/1`` row shuffled with ``np.random.shuffle``; ``_mask_center_block``;
  ``forward``: the mask, the mini-PointNet over *every* group, then the visible tokens kept, so that
  BatchNorm's batch statistics in training mode cover all ``B * G`` groups).
- :class:`PlainPointMAE`: ``Point_MAE`` (``forward``: decoder positions of the visible and hidden centres,
  mask tokens appended after the visible tokens, ``increase_dim`` a ``Conv1d`` k=1 to ``3 * group_size``,
  the hidden groups' Chamfer-L2), its sizes from ``cfgs/pretrain.yaml``'s ``transformer_config`` fields.
- :func:`chamfer_distance_l2`: ``extensions/chamfer_dist/__init__.py`` ``ChamferDistanceL2``
  (``mean(dist1) + mean(dist2)`` over every point of the batch) of the CUDA kernel ``chamfer_cuda.cu``
  (squared distance ``dx*dx + dy*dy + dz*dz`` of ``xyz2 - xyz1``, the first nearest on ties).
- :func:`furthest_point_sample`: pointnet2_ops' ``furthest_point_sampling_kernel``
  (``pointnet2_ops_lib/pointnet2_ops/_ext-src/src/sampling_gpu.cu``, called by ``utils/misc.py`` ``fps`` in
  ``Group``): start at index 0, ``temp`` initialised to 1e10, points with squared norm ``<= 1e-3`` never
  considered (nor updated), each of ``block_size = min(2^floor(log2 N), 512)`` threads keeping its first
  largest ``temp`` over the points ``k = tid, tid + block_size, ...``, then the kernel's tree reduction
  (the later slot wins only when strictly larger).

Deliberate differences from the reference, each outside the maths a step computes:

- ``Point_MAE.forward(pts)`` groups the cloud itself (``Group``: FPS, then ``knn_cuda``). Here the
  baseline starts from the loader's groups (``neighborhood [B, G, S, 3]``, ``center [B, G, 3]``: omnimask's
  ``point_groups`` tokens and coordinates), so that both sides see the same groups and the benchmark times
  the models alone; :func:`furthest_point_sample` lets a test check the tokenizer's centres against the
  kernel's. The mini-PointNet and the Chamfer distance do not depend on the order of a group's points.
- ``MaskTransformer.forward`` takes an optional ``bool_masked_pos`` (the batch's mask, ``same_mask``)
  in place of the one it draws.
- Weights always come from an omnimask model (:meth:`PlainPointMAE.from_model`); the reference's
  initialisation (``_init_weights``) is not repeated.
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal, Optional

import numpy as np
import torch
from torch import nn

from benchmarks.reference_timm import Attention, DropPath, Mlp
from benchmarks.references import Reference
from omnimask.weights.pointmae import LAYOUT


class Encoder(nn.Module):
    """The mini-PointNet: ``point_groups [B, G, n, 3]`` -> ``[B, G, encoder_channel]``."""

    def __init__(self, *, encoder_channel: int):
        super().__init__()
        self.encoder_channel = encoder_channel
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, encoder_channel, 1)
        )

    def forward(self, point_groups: torch.Tensor) -> torch.Tensor:
        bs, g, n, _ = point_groups.shape
        feature = self.first_conv(point_groups.reshape(bs * g, n, 3).transpose(2, 1))  # [B*G, 256, n]
        feature_global = torch.max(feature, dim=2, keepdim=True)[0]
        feature = torch.cat([feature_global.expand(-1, -1, n), feature], dim=1)  # [B*G, 512, n]
        feature = self.second_conv(feature)
        return torch.max(feature, dim=2, keepdim=False)[0].reshape(bs, g, self.encoder_channel)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + drop_path(attn(norm1(x)))``, then the same with the MLP."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _stack(*, embed_dim: int, depth: int, num_heads: int, drop_path_rate: list[float]) -> nn.ModuleList:
    return nn.ModuleList(Block(dim=embed_dim, num_heads=num_heads, drop_path=drop_path_rate[i]) for i in range(depth))


class TransformerEncoder(nn.Module):
    """``blocks``, the positions ``pos`` added before each: ``x [B, N, D], pos [B, N, D] -> [B, N, D]``."""

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, drop_path_rate: list[float]):
        super().__init__()
        self.blocks = _stack(embed_dim=embed_dim, depth=depth, num_heads=num_heads, drop_path_rate=drop_path_rate)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return x


class TransformerDecoder(nn.Module):
    """As :class:`TransformerEncoder`, then ``norm`` of the last ``return_token_num`` rows:
    ``[B, N, D] -> [B, return_token_num, D]``."""

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, drop_path_rate: list[float]):
        super().__init__()
        self.blocks = _stack(embed_dim=embed_dim, depth=depth, num_heads=num_heads, drop_path_rate=drop_path_rate)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor, pos: torch.Tensor, return_token_num: int) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return self.head(self.norm(x[:, -return_token_num:]))


def _rates(drop_path_rate: float, depth: int) -> list[float]:
    return [x.item() for x in torch.linspace(0, drop_path_rate, depth)]


class MaskTransformer(nn.Module):
    """The masked encoder: ``(neighborhood [B, G, S, 3], center [B, G, 3]) -> (x_vis [B, G_v, D],
    bool_masked_pos [B, G])``, the visible groups in ascending order."""

    def __init__(
        self,
        *,
        trans_dim: int,
        encoder_dims: int,
        depth: int,
        num_heads: int,
        drop_path_rate: float,
        mask_ratio: float,
        mask_type: Literal["rand", "block"],
    ):
        super().__init__()
        self.mask_ratio = mask_ratio
        self.trans_dim = trans_dim
        self.depth = depth
        self.drop_path_rate = drop_path_rate
        self.num_heads = num_heads
        self.encoder_dims = encoder_dims
        self.encoder = Encoder(encoder_channel=encoder_dims)
        self.mask_type = mask_type
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))
        self.blocks = TransformerEncoder(
            embed_dim=trans_dim, depth=depth, num_heads=num_heads, drop_path_rate=_rates(drop_path_rate, depth)
        )
        self.norm = nn.LayerNorm(trans_dim)

    def _mask_center_block(self, center: torch.Tensor, noaug: bool = False) -> torch.Tensor:
        """``int(mask_ratio * G)`` groups nearest (L2) to one centre drawn by Python's ``random``: ``[B, G]``."""
        if noaug or self.mask_ratio == 0:
            return torch.zeros(center.shape[:2]).bool()
        mask_idx = []
        for points in center:
            points = points.unsqueeze(0)  # [1, G, 3]
            index = random.randint(0, points.size(1) - 1)
            distance_matrix = torch.norm(points[:, index].reshape(1, 1, 3) - points, p=2, dim=-1)  # [1, G]
            idx = torch.argsort(distance_matrix, dim=-1, descending=False)[0]
            mask = torch.zeros(len(idx))
            mask[idx[: int(self.mask_ratio * len(idx))]] = 1
            mask_idx.append(mask.bool())
        return torch.stack(mask_idx).to(center.device)

    def _mask_center_rand(self, center: torch.Tensor, noaug: bool = False) -> torch.Tensor:
        """``int(mask_ratio * G)`` groups of each cloud, by ``np.random.shuffle`` of a 0/1 row: ``[B, G]``."""
        b, g, _ = center.shape
        if noaug or self.mask_ratio == 0:
            return torch.zeros(center.shape[:2]).bool()
        self.num_mask = int(self.mask_ratio * g)
        overall_mask = np.zeros([b, g])
        for i in range(b):
            mask = np.hstack([np.zeros(g - self.num_mask), np.ones(self.num_mask)])
            np.random.shuffle(mask)
            overall_mask[i, :] = mask
        return torch.from_numpy(overall_mask).to(torch.bool).to(center.device)

    def forward(
        self, neighborhood: torch.Tensor, center: torch.Tensor, noaug: bool = False, bool_masked_pos: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if bool_masked_pos is None:
            if self.mask_type == "rand":
                bool_masked_pos = self._mask_center_rand(center, noaug=noaug)
            else:
                bool_masked_pos = self._mask_center_block(center, noaug=noaug)
        group_input_tokens = self.encoder(neighborhood)  # every group: [B, G, C]
        batch_size, _, c = group_input_tokens.size()
        x_vis = group_input_tokens[~bool_masked_pos].reshape(batch_size, -1, c)
        pos = self.pos_embed(center[~bool_masked_pos].reshape(batch_size, -1, 3))
        x_vis = self.norm(self.blocks(x_vis, pos))
        return x_vis, bool_masked_pos


def chamfer_distance_l2(xyz1: torch.Tensor, xyz2: torch.Tensor) -> torch.Tensor:
    """``ChamferDistanceL2``: ``xyz1 [B, n, 3]``, ``xyz2 [B, m, 3]`` -> ``mean(dist1) + mean(dist2)``, each
    ``dist`` the squared distance of a point to its nearest point of the other set, in float32 (the
    extension's only type)."""
    xyz1, xyz2 = xyz1.float(), xyz2.float()
    diff = [xyz2[:, None, :, c] - xyz1[:, :, None, c] for c in range(3)]  # [B, n, m] each
    d = diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2]
    dist1, dist2 = d.min(dim=2).values, d.min(dim=1).values
    return torch.mean(dist1) + torch.mean(dist2)


class PlainPointMAE(Reference):
    """``Point_MAE`` from the groups on: ``forward(neighborhood [B, G, S, 3], center [B, G, 3],
    bool_masked_pos [B, G] or None) -> loss``; :meth:`outputs` also gives the predicted hidden groups."""

    def __init__(
        self,
        *,
        trans_dim: int,
        encoder_dims: int,
        depth: int,
        num_heads: int,
        decoder_depth: int,
        decoder_num_heads: int,
        drop_path_rate: float,
        mask_ratio: float,
        mask_type: Literal["rand", "block"],
        group_size: int,
        num_group: int,
    ):
        super().__init__()
        self.trans_dim = trans_dim
        self.MAE_encoder = MaskTransformer(
            trans_dim=trans_dim,
            encoder_dims=encoder_dims,
            depth=depth,
            num_heads=num_heads,
            drop_path_rate=drop_path_rate,
            mask_ratio=mask_ratio,
            mask_type=mask_type,
        )
        self.group_size = group_size
        self.num_group = num_group
        self.drop_path_rate = drop_path_rate
        self.mask_token = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))
        self.decoder_depth = decoder_depth
        self.decoder_num_heads = decoder_num_heads
        self.MAE_decoder = TransformerDecoder(
            embed_dim=trans_dim, depth=decoder_depth, num_heads=decoder_num_heads, drop_path_rate=_rates(drop_path_rate, decoder_depth)
        )
        self.increase_dim = nn.Sequential(nn.Conv1d(trans_dim, 3 * group_size, 1))
        self.loss_func = chamfer_distance_l2
        self.layout = LAYOUT

    @classmethod
    def from_model(cls, recipe: Any, model: nn.Module) -> "PlainPointMAE":
        """The reference sized as ``recipe`` (tokenizer, masker, encoder, head), holding ``model``'s weights
        (:data:`omnimask.weights.pointmae.LAYOUT`, loaded strictly)."""
        from omnimask.core import registry

        m = recipe.config.model
        _, enc = registry.check("encoder", m.encoder, "model.encoder")
        _, head = registry.check("head", m.head, "model.head")
        # the reference has one drop_path_rate for both stacks (transformer_config.drop_path_rate), one width
        # (trans_dim) and a fixed MLP ratio of 4
        rates = {enc.drop_path, head.drop_path}
        if len(rates) != 1 or enc.dim != head.dim or {enc.mlp_ratio, head.mlp_ratio} != {4.0}:
            raise ValueError(
                "Point-MAE's reference has one drop_path_rate, one width and mlp_ratio 4 for encoder "
                f"and decoder; got encoder {enc}, head {head}"
            )
        masker = m.masker.name
        if masker not in ("random", "point_block"):
            raise ValueError(f"Point-MAE's reference masks 'rand' (random) or 'block' (point_block), not {masker!r}")
        if masker == "random" and getattr(recipe.masker, "count", "mask") != "mask":
            raise ValueError("Point-MAE's reference hides int(ratio * G) groups: the random masker needs count: mask")
        tok = recipe.tokenizer.cfg
        ref = cls(
            trans_dim=enc.dim,
            encoder_dims=enc.dim,
            depth=enc.depth,
            num_heads=enc.heads,
            decoder_depth=head.depth,
            decoder_num_heads=head.heads,
            drop_path_rate=rates.pop(),
            mask_ratio=recipe.masker.ratio,
            mask_type="rand" if masker == "random" else "block",
            group_size=tok.group_size,
            num_group=tok.num_groups,
        )
        ref.load_state_dict(LAYOUT.to_reference(model.state_dict(), recipe), strict=True)
        return ref

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[torch.Tensor, ...]:
        """``(neighborhood [B, G, S, 3], center [B, G, 3])`` from the batch's tokens ``[B, G, S * 3]`` (each
        group's points, re-centred, (point, coordinate) order) and coords; with ``same_mask``, the batch's
        mask ``[B, G]`` too."""
        tokens = batch["tokens"].float()
        b, g, _ = tokens.shape
        neighborhood = tokens.reshape(b, g, -1, 3)
        center = batch["coords"].float()
        return (neighborhood, center, batch["mask"].bool()) if same_mask else (neighborhood, center)

    def outputs(
        self, neighborhood: torch.Tensor, center: torch.Tensor, bool_masked_pos: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, rebuild_points [B * M, 3S])``: the hidden groups' predictions, ordered by (cloud, group),
        each group's values (point, coordinate), omnimask's target layout."""
        x_vis, mask = self.MAE_encoder(neighborhood, center, bool_masked_pos=bool_masked_pos)
        b, _, c = x_vis.shape
        pos_emd_vis = self.decoder_pos_embed(center[~mask]).reshape(b, -1, c)
        pos_emd_mask = self.decoder_pos_embed(center[mask]).reshape(b, -1, c)
        n = pos_emd_mask.shape[1]
        x_full = torch.cat([x_vis, self.mask_token.expand(b, n, -1)], dim=1)
        pos_full = torch.cat([pos_emd_vis, pos_emd_mask], dim=1)
        x_rec = self.MAE_decoder(x_full, pos_full, n)
        b, m, c = x_rec.shape
        rebuild_points = self.increase_dim(x_rec.transpose(1, 2)).transpose(1, 2).reshape(b * m, -1, 3)
        gt_points = neighborhood[mask].reshape(b * m, -1, 3)
        return self.loss_func(rebuild_points, gt_points), rebuild_points.reshape(b * m, -1)

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor, bool_masked_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.outputs(neighborhood, center, bool_masked_pos)[0]


BASELINE = PlainPointMAE
"""The class :func:`benchmarks.references.reference_for` builds (``from_model``) for the ``pointmae`` family."""


def furthest_point_sample(points: torch.Tensor, npoint: int) -> torch.Tensor:
    """pointnet2_ops' ``furthest_point_sample`` of one cloud, step by step as its CUDA kernel:
    ``points [N, 3]`` (float32) -> indices ``[npoint]`` (int64).

    Arithmetic as the kernel's source writes it, in float32 (``nvcc`` may fuse its products and sums into
    FMAs, which can move a distance by one rounding and so change a choice between near-equal ones).
    """
    n = points.shape[0]
    block_size = max(min(1 << int(math.log(n) / math.log(2.0)), 512), 1)  # opt_n_threads
    x, y, z = points.detach().float().cpu().unbind(1)
    mag = (x * x) + (y * y) + (z * z)
    considered = mag.double() > 1e-3  # the kernel compares the float magnitude with the double 1e-3
    temp = torch.full((n,), 1e10, dtype=torch.float32)
    rows = -(-n // block_size)
    tid = torch.arange(block_size)
    idxs = torch.zeros(npoint, dtype=torch.int64)
    old = 0
    for j in range(1, npoint):
        dx, dy, dz = x - x[old], y - y[old], z - z[old]
        d = dx * dx + dy * dy + dz * dz
        temp = torch.where(considered, torch.minimum(d, temp), temp)
        # thread tid visits k = tid + r * block_size; an empty or all-skipped thread reports (-1, 0)
        dists = torch.full((rows * block_size,), -1.0)
        dists[:n] = torch.where(considered, temp, -1.0)
        best, r = dists.reshape(rows, block_size).max(dim=0)  # the first largest of each thread
        dists_i = torch.where(best > -1, r * block_size + tid, 0)
        size = block_size
        while size > 1:  # __update(tid, tid + size / 2): the later slot wins only when strictly larger
            size //= 2
            later = best[size : 2 * size] > best[:size]
            dists_i = torch.where(later, dists_i[size : 2 * size], dists_i[:size])
            best = torch.maximum(best[:size], best[size : 2 * size])
        old = int(dists_i[0])
        idxs[j] = old
    return idxs
