"""Point-cloud ingest: any supported file -> float32 ``.npy`` ``[N, 3 + C]`` (meshes sampled by area).

A file is bounded before its data are parsed (``readers.PointLimits``): by its size, by what its header
declares (``max_input_points``; ``max_decoded_bytes`` counts the float64 values the readers parse to) and,
for text, by its size times its parser's expansion. One file's ingest peaks at about 2x
``max_decoded_bytes`` (measured: 2.0x for a float64 ``.npy`` just under it): its bytes and the float64
values they decode to, then those values and their float32 copy.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from omnimask.core.interfaces import EncodedSample, QuarantineError
from omnimask.core.seeding import derive_seed, rng
from omnimask.modalities.pointcloud.readers import PointLimits, read_point_file

MAX_INPUT_POINTS = 10_000_000
"""Default ``max_input_points``: 10x a large indoor or LiDAR scan (ScanNet and S3DIS rooms hold 1e5-1e6
points), 1,200x ShapeNet-55's 8,192 a shape; 10M points of x, y, z and 23 more values fit the default
``max_decoded_bytes`` (2 GiB as float64)."""


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
    max_input_points: int | None = MAX_INPUT_POINTS
    """Files declaring (npy/PLY/OFF header) or holding more points (a mesh: vertices) are quarantined (None: no limit)."""
    max_decoded_bytes: int | None = 2**31
    """Files that would take more memory are quarantined: declared values x 8 bytes (float64), a text file's size x
    parse factor (None: no limit)."""

    def __post_init__(self) -> None:
        if self.mesh_points < 1 or self.min_points < 1:
            raise ValueError("mesh_points and min_points must be >= 1")
        if self.max_points is not None and self.max_points < self.min_points:
            raise ValueError(f"max_points ({self.max_points}) must be >= min_points ({self.min_points})")
        for name, limit in (("max_input_points", self.max_input_points), ("max_decoded_bytes", self.max_decoded_bytes)):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be >= 1 (or null for no limit), got {limit}")
        if self.max_input_points is None:
            return
        for name, count in (("mesh_points", self.mesh_points), ("min_points", self.min_points), ("max_points", self.max_points)):
            if count is not None and count > self.max_input_points:  # more points than any file may hold: no file could pass
                raise ValueError(f"{name} ({count}) must be <= max_input_points ({self.max_input_points})")

    @property
    def limits(self) -> PointLimits:
        """The bounds the readers check, before they read a file's data."""
        return PointLimits(self.max_input_points, self.max_decoded_bytes)


def encode_point_file(path: Path, opts: PointCloudIngestConfig) -> EncodedSample:
    seed = derive_seed("pointcloud_ingest", path.name)
    points = read_point_file(path, opts.mesh_points, seed, limits=opts.limits)
    original = points.shape[0]
    if original < opts.min_points:
        raise QuarantineError(f"only {original} points (min_points={opts.min_points})")
    if opts.xyz_only:
        points = points[:, :3]
    if opts.max_points is not None and original > opts.max_points:
        points = points[np.sort(rng(seed, "subsample").choice(original, opts.max_points, replace=False))]
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(points, dtype=np.float32), allow_pickle=False)
    xyz = np.ascontiguousarray(points[:, :3].T)  # [3, N]: along N of a C-order [N, 3], numpy's inner loop takes 3 values a call, far slower
    lo, hi = xyz.min(1), xyz.max(1)
    meta = {
        "points": int(points.shape[0]),
        "channels": int(points.shape[1]),
        "orig_points": int(original),
        "orig_format": path.suffix.lower().lstrip("."),
        "bbox_min": lo.round(6).tolist(),
        "bbox_max": hi.round(6).tolist(),
    }
    return EncodedSample("npy", buf.getvalue(), meta)
