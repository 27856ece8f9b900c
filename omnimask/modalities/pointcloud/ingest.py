"""Point-cloud ingest: any supported file -> float32 ``.npy`` ``[N, 3 + C]`` (meshes sampled by area)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from omnimask.modalities.base import EncodedSample, QuarantineError
from omnimask.modalities.pointcloud.readers import read_point_file
from omnimask.seeding import derive_seed, rng


@dataclass
class PointCloudIngestConfig:
    """Options of ``omnimask preprocess pointcloud``."""

    mesh_points: int = 8192
    """Points sampled from the surface of each mesh (OFF/OBJ); ShapeNet-55 stores 8192 per shape."""
    max_points: Optional[int] = None
    """Clouds with more points keep a seeded random subset of this many (None: all)."""
    min_points: int = 32
    """Clouds with fewer points are quarantined (Point-MAE groups 32 neighbours)."""
    xyz_only: bool = False
    """Store x, y, z only (drop normals, colours and other per-point values)."""

    def __post_init__(self) -> None:
        if self.mesh_points < 1 or self.min_points < 1:
            raise ValueError("mesh_points and min_points must be >= 1")
        if self.max_points is not None and self.max_points < self.min_points:
            raise ValueError(f"max_points ({self.max_points}) must be >= min_points ({self.min_points})")


def encode_point_file(path: Path, opts: PointCloudIngestConfig) -> EncodedSample:
    seed = derive_seed("pointcloud_ingest", path.name)
    points = read_point_file(path, opts.mesh_points, seed)
    original = points.shape[0]
    if original < opts.min_points:
        raise QuarantineError(f"only {original} points (min_points={opts.min_points})")
    if opts.xyz_only:
        points = points[:, :3]
    if opts.max_points is not None and original > opts.max_points:
        points = points[np.sort(rng(seed, "subsample").choice(original, opts.max_points, replace=False))]
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(points, dtype=np.float32), allow_pickle=False)
    lo, hi = points[:, :3].min(0), points[:, :3].max(0)
    meta = {"points": int(points.shape[0]), "channels": int(points.shape[1]), "orig_points": int(original),
            "orig_format": path.suffix.lower().lstrip("."), "bbox_min": lo.round(6).tolist(), "bbox_max": hi.round(6).tolist()}
    return EncodedSample("npy", buf.getvalue(), meta)
