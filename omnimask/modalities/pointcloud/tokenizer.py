"""Point-cloud tokenizer: Point-MAE's groups (FPS centres, kNN neighbourhoods re-centred)."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.core.interfaces import Tokenizer, TokenLayout, Tokens
from omnimask.core.registry import register
from omnimask.modalities.pointcloud.geometry import group_points


@register("tokenizer", "point_groups")
class PointGroupTokenizer(Tokenizer):
    """Points ``[P, 3]`` -> tokens ``[G, S * 3]`` (each group's ``S`` nearest points to its centre,
    re-centred, float32) and coords ``[G, 3]`` (the centres, by farthest point sampling).

    Default: 64 groups of 32 points (Point-MAE). Tokens are ordered by FPS order.
    """

    @dataclass
    class Config:
        num_groups: int = 64
        group_size: int = 32
        skip_near_origin: bool = True
        """Never pick a centre within ~0.032 of the origin (squared norm <= 1e-3), as the pointnet2 FPS kernel
        Point-MAE runs does (its quirk, matched by default); false picks among all points."""

        def __post_init__(self) -> None:
            if self.num_groups < 1 or self.group_size < 1:
                raise ValueError("num_groups and group_size must be >= 1")

    blank = float("nan")  # hidden groups are left out of previews

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.layout = TokenLayout(grid=(cfg.num_groups,), token_dim=cfg.group_size * 3)

    def __call__(self, sample: np.ndarray) -> Tokens:
        points = np.asarray(sample, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] < max(self.cfg.num_groups, self.cfg.group_size):
            raise ValueError(f"expected points [P >= {max(self.cfg.num_groups, self.cfg.group_size)}, 3], got {list(points.shape)}")
        if not np.isfinite(points).all():
            raise ValueError("points must be finite: NaN or infinite coordinates cannot be grouped")
        groups, centers = group_points(
            torch.from_numpy(points)[None], self.cfg.num_groups, self.cfg.group_size, skip_near_origin=self.cfg.skip_near_origin
        )
        return Tokens(groups[0].reshape(self.cfg.num_groups, -1), coords=centers[0])

    def detokenize(self, tokens: torch.Tensor, coords: Optional[torch.Tensor] = None, size: int = 128) -> torch.Tensor:
        """Groups ``[B, G, S * 3]`` placed at their centres ``[B, G, 3]``, drawn from an oblique view as
        pictures ``[B, 3, size, size]``: one colour per group, darker further away; groups whose values
        are NaN (hidden) are left out."""
        if coords is None:
            raise ValueError("point groups need their centres (coords) to be drawn")
        b, g, _ = tokens.shape
        pts = tokens.float().reshape(b, g, -1, 3) + coords.float()[:, :, None]
        rot = _view_rotation().to(pts.device)
        view = pts @ rot.T  # [B, G, S, 3]
        colours = _palette(g).to(pts.device)
        out = torch.ones(b, 3, size, size, device=pts.device)
        for i in range(b):
            v = view[i].reshape(-1, 3)
            c = colours.repeat_interleave(pts.shape[2], 0)
            ok = torch.isfinite(v).all(dim=1)
            v, c = v[ok], c[ok]
            order = torch.argsort(v[:, 2])  # far to near: nearer points drawn last
            v, c = v[order], c[order]
            shade = (0.55 + 0.45 * (v[:, 2:3] + 1.5) / 3).clamp(0.3, 1.0)
            col = ((v[:, 0] + 1.2) / 2.4 * (size - 1)).round().long().clamp(0, size - 2)
            row = ((1.2 - v[:, 1]) / 2.4 * (size - 1)).round().long().clamp(0, size - 2)
            for dr in (0, 1):
                for dc in (0, 1):
                    out[i, :, row + dr, col + dc] = (c * shade).T
        return out


def _view_rotation() -> torch.Tensor:
    ay, ax = np.radians(35), np.radians(25)
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    return torch.from_numpy(rx @ ry).float()


def _palette(n: int) -> torch.Tensor:
    """``n`` well-separated colours (golden-ratio hues), ``[n, 3]`` in [0, 1]."""
    return torch.tensor([colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.9) for i in range(n)], dtype=torch.float32)
