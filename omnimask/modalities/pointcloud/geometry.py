"""Point-cloud geometry in plain, batched torch: farthest point sampling, kNN grouping and the
Chamfer distance; and the loader's normalisation into the unit sphere, in numpy.

Point-MAE runs these as CUDA extensions (pointnet2_ops, knn_cuda, chamfer_dist) and
pyg-lib/torch-cluster are not installable here, so they are written with tensor ops
that work on any device: FPS loops over the ``K`` centres (64), never over points or
samples (one cloud on the CPU, the loader's case, takes the same loop in numpy, which has less
per-operation overhead than torch, ``python -m benchmarks.micro``, and its kNN reuses the
sampling's distances); kNN is exact squared distances + ``topk``, Chamfer ``cdist`` + ``min``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre ``[..., N, 3]`` points on their mean and scale them into the unit sphere (Point-MAE's
    ``pc_norm``), in numpy: a loader worker's data preparation (torch and the round trip to it would add
    their per-operation overhead to every sample)."""
    centred = points - points.mean(axis=-2, keepdims=True)
    radius = np.sqrt((centred * centred).sum(axis=-1).max(axis=-1, keepdims=True))
    return centred / np.maximum(radius, 1e-12)[..., None]


NEAR_ORIGIN = 1e-3
"""pointnet2's FPS kernel (``furthest_point_sampling_kernel``, which Point-MAE calls) skips every point whose
squared norm is at most this: such a point (within ~0.032 of the origin) is never picked, except as the
first index."""


def farthest_point_sample(
    points: torch.Tensor, k: int, start: Optional[torch.Tensor] = None, *, skip_near_origin: bool = False
) -> torch.Tensor:
    """Indices ``[B, k]`` of ``k`` points of ``[B, N, 3]`` chosen by iterative farthest point sampling.

    The first index is ``start`` (default 0, as pointnet2's ``furthest_point_sample``);
    each next one is the point farthest (squared L2) from all chosen so far. With ``skip_near_origin``
    the points with squared norm <= :data:`NEAR_ORIGIN` are never chosen after the first, as pointnet2's
    kernel does (a cloud with fewer than ``k`` other points then repeats its last choice).
    """
    b, n, _ = points.shape
    if not 0 < k <= n:
        raise ValueError(f"cannot sample {k} of {n} points")
    if b == 1 and points.device.type == "cpu":  # one cloud in a loader worker: numpy's per-op cost is lower
        first = 0 if start is None else int(torch.as_tensor(start).reshape(-1)[0])
        return torch.from_numpy(_fps_numpy(points[0].detach().numpy(), k, first, skip_near_origin=skip_near_origin))[None]
    idx = torch.empty(b, k, dtype=torch.long, device=points.device)
    idx[:, 0] = 0 if start is None else start
    dist = torch.full((b, n), float("inf"), dtype=points.dtype, device=points.device)
    if skip_near_origin:
        # the kernel's float sum x*x + y*y + z*z, compared with the double 1e-3
        x, y, z = points.unbind(-1)
        dist = dist.masked_fill((x * x + y * y + z * z).double() <= NEAR_ORIGIN, float("-inf"))
    rows = torch.arange(b, device=points.device)
    for i in range(1, k):
        last = points[rows, idx[:, i - 1]]  # [B, 3]
        dist = torch.minimum(dist, (points - last[:, None]).pow(2).sum(-1))
        idx[:, i] = dist.argmax(dim=1)
    return idx


def _fps_numpy(points: np.ndarray, k: int, first: int, rows: Optional[np.ndarray] = None, *, skip_near_origin: bool = False) -> np.ndarray:
    """:func:`farthest_point_sample` of one cloud ``[N, 3]`` in numpy (the same indices): ``[k]`` int64.

    The coordinates are split into three contiguous arrays and every step works in preallocated buffers:
    each of the ``k - 1`` steps is then nine small ufunc calls and no allocation, faster than an ``[N, 3]``
    difference and ``einsum`` a step (``python -m benchmarks.micro`` compares them).
    ``rows [k, N]``, where given, receives each chosen point's squared distances to every point
    (``rows[i, n] = |p_n - p_idx[i]|^2``): the sampling computes all but the last of them anyway.
    """
    x, y, z = (np.ascontiguousarray(points[:, j]) for j in range(3))
    idx = np.empty(k, dtype=np.int64)
    idx[0] = last = first
    dist = np.full(len(points), np.inf, dtype=points.dtype)
    if skip_near_origin:  # -inf stays the minimum, so these are never the farthest
        dist[(x * x + y * y + z * z).astype(np.float64) <= NEAR_ORIGIN] = -np.inf
    scratch, t = np.empty_like(dist), np.empty_like(dist)
    for i in range(k if rows is not None else k - 1):
        d = scratch if rows is None else rows[i]
        np.subtract(x, x[last], out=d)
        np.multiply(d, d, out=d)
        for axis in (y, z):
            np.subtract(axis, axis[last], out=t)
            np.multiply(t, t, out=t)
            np.add(d, t, out=d)
        if i + 1 < k:
            np.minimum(dist, d, out=dist)
            idx[i + 1] = last = int(dist.argmax())
    return idx


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a_m - b_n|^2`` for ``a [B, M, 3]``, ``b [B, N, 3]`` -> ``[B, M, N]``, summed coordinate by
    coordinate as :func:`_fps_numpy` does (the same float32 values; ``cdist``'s matrix-product form
    rounds differently and can swap near-equal neighbours)."""
    d = (a[:, :, None, 0] - b[:, None, :, 0]).square()
    for c in (1, 2):
        d = d + (a[:, :, None, c] - b[:, None, :, c]).square()
    return d


def knn(query: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, M, k]`` of the ``k`` nearest ``points [B, N, 3]`` to each ``query [B, M, 3]``, nearest first."""
    if k > points.shape[1]:
        raise ValueError(f"k={k} exceeds the {points.shape[1]} points")
    return squared_distances(query, points).topk(k, dim=-1, largest=False, sorted=True).indices


def _nearest(sq: np.ndarray, k: int) -> np.ndarray:
    """Column indices ``[M, k]`` of the ``k`` smallest entries of each row of the squared distances
    ``sq [M, N]`` (finite, >= 0), nearest first.

    A non-negative float's bits, read as a signed integer of the same width, order as its value does,
    and torch's integer ``topk`` skips the float one's NaN handling, so it is faster than the float ``topk``
    (``np.argpartition`` and ``np.partition`` were slower still).
    """
    keys = torch.from_numpy(sq.view(f"i{sq.itemsize}"))
    return keys.topk(k, dim=1, largest=False, sorted=True).indices.numpy()


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points [B, N, C]`` at ``idx [B, ...]`` -> ``[B, ..., C]``."""
    b = points.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(points, 1, flat[..., None].expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])


def group_points(
    points: torch.Tensor, num_groups: int, group_size: int, *, skip_near_origin: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-MAE's grouping: FPS centres ``[B, G, 3]`` (:func:`farthest_point_sample`) and their kNN
    neighbourhoods ``[B, G, S, 3]``, each re-centred on its centre."""
    if points.shape[0] == 1 and points.device.type == "cpu" and points.dtype in (torch.float32, torch.float64):
        return _group_one_cloud(points[0].detach().numpy(), num_groups, group_size, skip_near_origin)
    centers = gather_points(points, farthest_point_sample(points, num_groups, skip_near_origin=skip_near_origin))
    neighborhoods = gather_points(points, knn(centers, points, group_size))
    return neighborhoods - centers[:, :, None], centers


def _group_one_cloud(points: np.ndarray, num_groups: int, group_size: int, skip_near_origin: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`group_points` of one cloud ``[N, 3]`` (a loader worker's case) in numpy: the kNN reads the
    distances the sampling computed (no second distance matrix) and selects with :func:`_nearest`,
    which saves computing the distances twice."""
    if not 0 < num_groups <= len(points):
        raise ValueError(f"cannot sample {num_groups} of {len(points)} points")
    if group_size > len(points):
        raise ValueError(f"k={group_size} exceeds the {len(points)} points")
    rows = np.empty((num_groups, len(points)), dtype=points.dtype)
    centers = points[_fps_numpy(points, num_groups, 0, rows, skip_near_origin=skip_near_origin)]
    groups = points[_nearest(rows, group_size)] - centers[:, None]
    return torch.from_numpy(groups)[None], torch.from_numpy(centers)[None]


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Chamfer distance with squared L2 distances, per set: ``[B, N, 3]``, ``[B, M, 3]`` -> ``[B]``.

    ``mean_i min_j |a_i - b_j|^2 + mean_j min_i |a_i - b_j|^2`` (Point-MAE's ``ChamferDistanceL2``).
    """
    d = torch.cdist(a.float(), b.float()).pow(2)  # [B, N, M]
    return d.min(dim=2).values.mean(dim=1) + d.min(dim=1).values.mean(dim=1)
