"""Point-cloud geometry in plain torch: FPS, kNN, grouping, Chamfer distance, normalisation."""

import itertools

import numpy as np
import pytest
import torch

from omnimask.modalities.pointcloud.geometry import (
    chamfer_distance,
    farthest_point_sample,
    gather_points,
    group_points,
    knn,
    normalize_unit_sphere,
)


def test_fps_picks_the_farthest_points_of_a_hand_made_cloud():
    # the 8 corners of a cube among points near its centre: FPS from the centre point reaches every corner first
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    inner = torch.rand(40, 3, generator=torch.Generator().manual_seed(0)) * 0.2 - 0.1
    cloud = torch.cat([torch.zeros(1, 3), inner, corners])[None]  # index 0 is the centre
    idx = farthest_point_sample(cloud, 9)[0]
    assert idx[0] == 0
    assert set(idx[1:].tolist()) == set(range(41, 49)), "the 8 corners, before any inner point"
    # on a line, FPS from one end goes to the other end, then the middle
    line = torch.linspace(0, 1, 11)[:, None].expand(-1, 3)[None].contiguous()
    assert farthest_point_sample(line, 3)[0].tolist() == [0, 10, 5]


def test_fps_each_pick_maximises_the_distance_to_the_chosen_set():
    pts = torch.randn(3, 200, 3, generator=torch.Generator().manual_seed(1))
    idx = farthest_point_sample(pts, 16)
    for b in range(3):
        for i in range(1, 16):
            chosen = pts[b, idx[b, :i]]
            d = torch.cdist(pts[b], chosen).min(dim=1).values
            assert torch.isclose(d[idx[b, i]], d.max())


def test_knn_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    pts, q = torch.randn(2, 300, 3, generator=g), torch.randn(2, 10, 3, generator=g)
    idx = knn(q, pts, 32)
    for b in range(2):
        for m in range(10):
            d = ((pts[b] - q[b, m]) ** 2).sum(-1)
            assert idx[b, m].tolist() == torch.argsort(d)[:32].tolist()


def test_group_points_recentres_neighbourhoods_on_fps_centres():
    pts = torch.from_numpy(normalize_unit_sphere(torch.randn(2, 1024, 3, generator=torch.Generator().manual_seed(3)).numpy()))
    groups, centers = group_points(pts, 64, 32)
    assert groups.shape == (2, 64, 32, 3) and centers.shape == (2, 64, 3)
    assert torch.allclose(groups[:, :, 0], torch.zeros(2, 64, 3), atol=1e-6), "each centre is its own nearest point"
    assert torch.allclose(gather_points(pts, farthest_point_sample(pts, 64)), centers)


def test_chamfer_distance_on_known_sets():
    a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 2, 0]]])
    # a -> b: both points exact (0); b -> a: 0, 0 and |(1,2,0)-(1,0,0)|^2 = 4 -> mean 4/3
    assert torch.allclose(chamfer_distance(a, b), torch.tensor([4 / 3]))
    assert torch.allclose(chamfer_distance(a, a), torch.zeros(1))
    shifted = a + torch.tensor([0.0, 0.5, 0])
    assert torch.allclose(chamfer_distance(a, shifted), torch.tensor([0.25 + 0.25]))


def test_normalize_unit_sphere():
    pts = np.random.default_rng(5).standard_normal((4, 100, 3)).astype(np.float32) * 5 + 3
    out = normalize_unit_sphere(pts)
    assert out.dtype == np.float32 and out.shape == pts.shape
    assert np.allclose(out.mean(1), 0, atol=1e-5)
    assert np.allclose(np.linalg.norm(out, axis=-1).max(1), 1)


def test_one_cpu_cloud_takes_the_numpy_path_with_the_same_indices():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(3, 700, 3, generator=g)
    batched = farthest_point_sample(pts, 48)  # the torch loop (B > 1)
    one_by_one = torch.cat([farthest_point_sample(pts[i : i + 1], 48) for i in range(3)])  # numpy, one cloud each
    assert torch.equal(batched, one_by_one)
    start = torch.tensor([7, 7, 7])
    assert torch.equal(farthest_point_sample(pts, 5, start)[:1], farthest_point_sample(pts[:1], 5, start[:1]))


def test_one_cpu_cloud_groups_like_the_batched_path_and_brute_force():
    """One cloud on the CPU is grouped in numpy from the sampling's own distances; the batched torch path
    (FPS loop, then kNN) gives the same centres and neighbourhoods, each the exact nearest points."""
    pts = torch.from_numpy(normalize_unit_sphere(torch.randn(3, 700, 3, generator=torch.Generator().manual_seed(4)).numpy()))
    groups, centers = group_points(pts, 40, 24)  # B = 3: the torch path
    for b in range(3):
        one_groups, one_centers = group_points(pts[b : b + 1], 40, 24)  # B = 1: numpy
        assert torch.equal(one_centers[0], centers[b]) and torch.equal(one_groups[0], groups[b])
        for g in range(40):
            d = ((pts[b] - centers[b, g]) ** 2).sum(-1)
            assert torch.equal(one_groups[0, g], pts[b, torch.argsort(d)[:24]] - centers[b, g])
    with pytest.raises(ValueError, match="exceeds"):
        group_points(pts[:1], 8, 701)
