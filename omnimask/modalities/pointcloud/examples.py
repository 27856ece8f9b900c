"""Demo and test shapes: primitives as meshes (OFF, OBJ) and point clouds (PLY, NPY, XYZ)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

KINDS = ("sphere", "box", "torus", "cylinder", "cone")


def primitive(kind: str, g: np.random.Generator, n: int = 2048) -> np.ndarray:
    """``n`` points on the surface of a randomly proportioned and rotated primitive, float32 ``[n, 3]``."""
    u, v = g.random(n), g.random(n)
    if kind == "sphere":
        z, phi = 2 * u - 1, 2 * np.pi * v
        r = np.sqrt(1 - z * z)
        pts = np.c_[r * np.cos(phi), r * np.sin(phi), z] * g.uniform(0.6, 1.0, 3)
    elif kind == "box":
        pts = g.uniform(-1, 1, (n, 3))
        axis = g.integers(0, 3, n)
        pts[np.arange(n), axis] = np.sign(pts[np.arange(n), axis])
        pts *= g.uniform(0.3, 1.0, 3)
    elif kind == "torus":
        big, small = 1.0, g.uniform(0.2, 0.45)
        a, b = 2 * np.pi * u, 2 * np.pi * v
        pts = np.c_[(big + small * np.cos(b)) * np.cos(a), (big + small * np.cos(b)) * np.sin(a), small * np.sin(b)]
    elif kind == "cylinder":
        a, h, r = 2 * np.pi * u, g.uniform(0.5, 1.5), g.uniform(0.3, 0.8)
        pts = np.c_[r * np.cos(a), r * np.sin(a), h * (2 * v - 1)]
    elif kind == "cone":
        a, h = 2 * np.pi * u, np.sqrt(v)
        pts = np.c_[h * np.cos(a) * 0.7, h * np.sin(a) * 0.7, 1 - 2 * h]
    else:
        raise ValueError(f"unknown shape {kind!r}")
    q, _ = np.linalg.qr(g.normal(size=(3, 3)))  # a random rotation
    return (pts @ q.T).astype(np.float32)


def write_ply(path: Path, pts: np.ndarray) -> None:
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_bytes(header.encode() + pts.astype("<f4").tobytes())


def write_box_mesh(path: Path, size: np.ndarray) -> None:
    """A box as an OFF (quads) or OBJ (triangles) mesh; the loader samples its surface by area."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * size
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    if path.suffix == ".off":
        path.write_text(
            "OFF\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in corners) + "".join(f"4 {a} {b} {c} {d}\n" for a, b, c, d in quads)
        )
    else:
        path.write_text(
            "".join(f"v {x} {y} {z}\n" for x, y, z in corners)
            + "".join(f"f {a + 1} {b + 1} {c + 1}\nf {a + 1} {c + 1} {d + 1}\n" for a, b, c, d in quads)
        )


def build_demo_shapes(out: Path, num_shapes: int, seed: int = 0) -> int:
    """``num_shapes`` shapes in one folder per kind (PLY, NPY, XYZ clouds; every sixth a box mesh as
    OFF or OBJ), plus three broken files; returns files written."""
    g = np.random.default_rng(seed)
    for i in range(num_shapes):
        kind = KINDS[i % len(KINDS)]
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        if i % 6 == 5:
            write_box_mesh(folder / f"mesh{i:04d}{'.off' if i % 12 == 5 else '.obj'}", g.uniform(0.3, 1.0, 3))
            continue
        pts = primitive(kind, g)
        fmt = i % 3
        if fmt == 0:
            write_ply(folder / f"{kind}{i:04d}.ply", pts)
        elif fmt == 1:
            np.save(folder / f"{kind}{i:04d}.npy", pts)
        else:
            np.savetxt(folder / f"{kind}{i:04d}.xyz", pts, fmt="%.5f")
    broken = out / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "empty.ply").write_bytes(b"")
    np.save(broken / "nan.npy", np.full((64, 3), np.nan, np.float32))
    (broken / "words.xyz").write_text("not a point cloud\n")
    return num_shapes + 3
