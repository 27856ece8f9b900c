"""Point-MAE written the way its code is (Pang et al. 2022, ``Point_MAE``): a baseline of the training-step benchmark.

The mini-PointNet embeds every group, and the visible ones are picked by the
random mask drawn inside the model (``int(ratio * G)`` hidden per shape; the
paper's code shuffles a numpy array per shape, here one vectorised argsort).
Each encoder block gets the visible centres' positions added. The decoder runs
every block over the visible tokens and the mask tokens, then predicts the last
``N_h`` rows. The loss is Chamfer-L2 between the predicted and the true hidden
groups. Point-MAE groups (FPS + kNN) inside its forward. Here both sides get
groups made by the loader (timed by the loader benchmark), so the step
compares the models alone.

omnimask's encoder embeds the visible groups only, so in training mode its
PointNet's batch norm takes its statistics over those. The equal-loss check
runs in eval mode, where both sides use the running statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmarks.reference_mae import stack_like
from benchmarks.references import Reference
from omnimask.modalities.pointcloud.geometry import chamfer_distance
from omnimask.models.point_mae import MiniPointNet, position_mlp
from omnimask.models.recipe import MaskedModel, Recipe


class PlainPointEncoder(nn.Module):
    def __init__(self, dim: int, blocks: nn.ModuleList):
        super().__init__()
        self.embed = MiniPointNet(dim)
        self.pos = position_mlp(dim)
        self.blocks = stack_like(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)


class PlainPointDecoder(nn.Module):
    def __init__(self, encoder_dim: int, dim: int, blocks: nn.ModuleList, target_dim: int):
        super().__init__()
        self.embed = nn.Identity() if encoder_dim == dim else nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = position_mlp(dim)
        self.blocks = stack_like(blocks)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, target_dim)


class PlainPointMAE(Reference):
    """``forward(groups [B, G, S * 3], centres [B, G, 3], mask [B, G] or None) -> scalar loss``."""

    def __init__(self, recipe: Recipe, model: MaskedModel):
        super().__init__()
        enc, head = model.encoder, model.head
        self.encoder = PlainPointEncoder(enc.dim, enc.blocks)
        self.head = PlainPointDecoder(enc.dim, head.mask_token.shape[-1], head.blocks, recipe.target.dim)
        self.mask_ratio = recipe.masker.ratio

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[Any, ...]:
        groups, centres = batch["tokens"].float(), batch["coords"].float()
        return (groups, centres, batch["mask"]) if same_mask else (groups, centres)

    def random_mask(self, b: int, g: int, device: torch.device) -> torch.Tensor:
        """``[B, G]`` bool, ``int(ratio * G)`` True (hidden) per shape, uniformly at random."""
        hidden = torch.rand(b, g, device=device).argsort(dim=1)[:, : int(self.mask_ratio * g)]
        return torch.zeros(b, g, dtype=torch.bool, device=device).scatter_(1, hidden, True)

    def forward(self, groups: torch.Tensor, centres: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        enc, dec = self.encoder, self.head
        b, g, _ = groups.shape
        if mask is None:
            mask = self.random_mask(b, g, groups.device)
        tokens = enc.embed(groups.reshape(b * g, -1, 3)).reshape(b, g, -1)  # every group
        x = tokens[~mask].reshape(b, -1, tokens.shape[-1])
        pos = enc.pos(centres[~mask].reshape(b, -1, 3))
        for block in enc.blocks:
            x = block(x + pos)
        x = dec.embed(enc.norm(x))
        pos_hidden = dec.pos(centres[mask].reshape(b, -1, 3))
        n = pos_hidden.shape[1]
        x = torch.cat([x, dec.mask_token.expand(b, n, -1)], dim=1)
        pos = torch.cat([dec.pos(centres[~mask].reshape(b, -1, 3)), pos_hidden], dim=1)
        for block in dec.blocks:
            x = block(x + pos)
        pred = dec.pred(dec.norm(x[:, -n:]))  # [B, N_h, S * 3]
        return chamfer_distance(pred.reshape(b * n, -1, 3), groups[mask].reshape(b * n, -1, 3)).mean()
