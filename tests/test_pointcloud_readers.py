"""Point-cloud readers on hand-written files: PLY (ASCII, binary both endians), NPY, XYZ/TXT, OFF and
OBJ meshes sampled by area, and the quarantine reasons of broken ones."""

import re

import numpy as np
import pytest

from omnimask.core.interfaces import QuarantineError
from omnimask.modalities.pointcloud.readers import read_point_file

PTS = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, -2.0], [3.25, -1.0, 4.0]], dtype=np.float32)


def ply_header(fmt: str, extra: str = "") -> bytes:
    return (
        f"ply\nformat {fmt} 1.0\ncomment made by a test\nelement vertex 3\nproperty float x\nproperty float y\n"
        f"property float z\n{extra}element face 1\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()


def test_ply_ascii_and_binary(tmp_path):
    rows = "".join(f"{x} {y} {z} {i * 10}\n" for i, (x, y, z) in enumerate(PTS)) + "3 0 1 2\n"
    (tmp_path / "a.ply").write_bytes(ply_header("ascii", "property uchar red\n") + rows.encode())
    out = read_point_file(tmp_path / "a.ply", 0, 0)
    assert out.dtype == np.float32 and np.allclose(out, np.c_[PTS, [0, 10, 20]])
    for fmt, endian in (("binary_little_endian", "<"), ("binary_big_endian", ">")):
        rec = np.zeros(3, dtype=[("x", endian + "f4"), ("y", endian + "f4"), ("z", endian + "f4"), ("red", "u1")])
        rec["x"], rec["y"], rec["z"], rec["red"] = PTS[:, 0], PTS[:, 1], PTS[:, 2], [5, 6, 7]
        (tmp_path / "b.ply").write_bytes(ply_header(fmt, "property uchar red\n") + rec.tobytes() + b"\x03" + b"\0" * 12)
        assert np.allclose(read_point_file(tmp_path / "b.ply", 0, 0), np.c_[PTS, [5, 6, 7]])
    # properties in another order: x, y, z still come first
    rec = np.zeros(3, dtype=[("z", "<f8"), ("x", "<f8"), ("y", "<f8")])
    rec["x"], rec["y"], rec["z"] = PTS[:, 0], PTS[:, 1], PTS[:, 2]
    hdr = b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty double z\nproperty double x\nproperty double y\nend_header\n"
    (tmp_path / "c.ply").write_bytes(hdr + rec.tobytes())
    assert np.allclose(read_point_file(tmp_path / "c.ply", 0, 0), PTS)


def test_npy_xyz_and_txt(tmp_path):
    np.save(tmp_path / "p.npy", PTS)
    (tmp_path / "p.xyz").write_text("".join(f"{x} {y} {z}\n" for x, y, z in PTS))
    (tmp_path / "p.txt").write_text("".join(f"{x},{y},{z},0,0,1\n" for x, y, z in PTS))  # ModelNet style with normals
    assert np.allclose(read_point_file(tmp_path / "p.npy", 0, 0), PTS)
    assert np.allclose(read_point_file(tmp_path / "p.xyz", 0, 0), PTS)
    out = read_point_file(tmp_path / "p.txt", 0, 0)
    assert out.shape == (3, 6) and np.allclose(out[:, :3], PTS)


def test_meshes_are_sampled_by_area(tmp_path):
    # a unit square (two triangles) at z=0 and a 10x-larger-area square at z=1: ~10/11 of the points on the big one
    off = "OFF\n8 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n3.1623 0 1\n3.1623 3.1623 1\n0 3.1623 1\n4 0 1 2 3\n4 4 5 6 7\n"
    (tmp_path / "m.off").write_text(off)
    pts = read_point_file(tmp_path / "m.off", 11000, seed=0)
    assert pts.shape == (11000, 3)
    share_top = (pts[:, 2] == 1).mean()
    assert abs(share_top - 10 / 11) < 0.01
    low = pts[pts[:, 2] == 0]
    assert low[:, :2].min() >= 0 and low[:, :2].max() <= 1
    assert np.array_equal(pts, read_point_file(tmp_path / "m.off", 11000, seed=0))  # seeded
    (tmp_path / "modelnet.off").write_text("OFF4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")  # ModelNet's header quirk
    assert read_point_file(tmp_path / "modelnet.off", 100, 1).shape == (100, 3)
    obj = "# a quad\nv 0 0 0\nv 2 0 0\nv 2 2 0\nv 0 2 0\nvn 0 0 1\nf 1/1/1 2/2/1 3/3/1 4/4/1\nf -4 -3 -2\n"
    (tmp_path / "m.obj").write_text(obj)
    pts = read_point_file(tmp_path / "m.obj", 500, 2)
    assert pts.shape == (500, 3) and np.allclose(pts[:, 2], 0) and pts[:, :2].min() >= 0 and pts[:, :2].max() <= 2


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.ply", b"", "empty file"),
        ("nan.npy", None, "NaN or infinite"),
        ("flat.npy", None, "expected points [N, 3+]"),
        ("trunc.ply", None, "truncated"),
        ("garbage.xyz", b"hello world foo\n", "unparsable .xyz"),
        ("badface.off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "face index out of range"),
        ("noface.obj", b"v 0 0 0\nv 1 0 0\n", "mesh has no faces"),
        ("model.stl", b"solid x\n", "unsupported point-cloud format .stl"),
        ("nopoints.xyz", b"# nothing\n", "no points"),
    ],
)
def test_broken_files_get_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    if name == "nan.npy":
        np.save(path, np.array([[0, 0, np.nan]], np.float32))
    elif name == "flat.npy":
        np.save(path, np.zeros(5, np.float32))
    elif name == "trunc.ply":
        path.write_bytes(ply_header("binary_little_endian") + PTS.tobytes()[:20])
    else:
        path.write_bytes(content)
    with pytest.raises(QuarantineError, match=re.escape(reason)):
        read_point_file(path, 100, 0)
