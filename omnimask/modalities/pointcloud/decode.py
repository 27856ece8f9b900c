"""Point-cloud decoding for the loader: sample ``num_points``, normalise, augment (Point-MAE)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnimask.core.seeding import rng
from omnimask.io.npy import load_npy
from omnimask.modalities.pointcloud.geometry import normalize_unit_sphere


@dataclass
class PointCloudAugmentConfig:
    """``data.augment`` for point clouds (Point-MAE's pretraining defaults)."""

    num_points: int = 1024
    """Points per sample: a seeded random subset (with repeats when the cloud is smaller)."""
    scale: tuple[float, float] = (2 / 3, 3 / 2)
    """Per-axis scale range (``PointcloudScaleAndTranslate``)."""
    translate: float = 0.2
    """Per-axis translation range +-translate."""

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must satisfy 0 < min <= max, got {self.scale}")
        if self.translate < 0:
            raise ValueError(f"translate must be >= 0, got {self.translate}")


class PointCloudDecoder:
    """``(members, seed) -> float32 [num_points, 3]``: sample, centre and scale into the unit
    sphere, then per-axis scale and translate."""

    def __init__(self, augment: PointCloudAugmentConfig):
        self.aug = augment

    def __call__(self, members: dict[str, bytes], seed: int) -> np.ndarray:
        data = members.get("npy")
        if data is None:
            raise ValueError(f"sample has no npy member (members: {sorted(members)})")
        points = load_npy(data)[:, :3]
        g = rng(seed, "pointcloud_augment")
        n = self.aug.num_points
        pick = g.choice(points.shape[0], n, replace=points.shape[0] < n)
        xyz = normalize_unit_sphere(points[pick].astype(np.float32, copy=False))
        scale = g.uniform(*self.aug.scale, size=3).astype(np.float32)
        shift = g.uniform(-self.aug.translate, self.aug.translate, size=3).astype(np.float32)
        return xyz * scale + shift
