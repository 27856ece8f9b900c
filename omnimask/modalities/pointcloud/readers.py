"""Point-cloud file readers: PLY (ASCII and binary), NPY, XYZ/TXT/CSV, and OFF/OBJ meshes
sampled to points by triangle area. Each returns float32 ``[N, 3 + C]`` (x, y, z first) or
raises :class:`QuarantineError` with the reason."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from omnimask.modalities.base import QuarantineError
from omnimask.pipelines.npy import load_npy

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
POINT_EXTS = {"ply", "npy", "xyz", "txt", "csv", "pts"}
MESH_EXTS = {"off", "obj"}


def read_point_file(path: Path, mesh_points: int, seed: int) -> np.ndarray:
    """Points of ``path`` by its extension; meshes give ``mesh_points`` points sampled by area with ``seed``."""
    ext = path.suffix.lower().lstrip(".")
    data = path.read_bytes()
    if not data:
        raise QuarantineError("empty file")
    try:
        if ext == "ply":
            points = read_ply(data)
        elif ext == "npy":
            points = load_npy(data)
        elif ext in ("xyz", "txt", "csv", "pts"):
            points = read_text_points(data)
        elif ext == "off":
            points = sample_mesh(*read_off(data), mesh_points, seed)
        elif ext == "obj":
            points = sample_mesh(*read_obj(data), mesh_points, seed)
        else:
            raise QuarantineError(f"unsupported point-cloud format .{ext} (use {', '.join(sorted(POINT_EXTS | MESH_EXTS))})")
    except QuarantineError:
        raise
    except (ValueError, IndexError, UnicodeDecodeError, EOFError) as e:
        raise QuarantineError(f"unparsable .{ext} file: {e}") from None
    return check_points(points)


def check_points(points: np.ndarray) -> np.ndarray:
    """``points`` as float32 ``[N, >= 3]`` with N > 0 and finite values, or a quarantine reason."""
    if points.ndim != 2 or points.shape[1] < 3:
        raise QuarantineError(f"expected points [N, 3+], got shape {list(points.shape)}")
    if points.shape[0] == 0:
        raise QuarantineError("no points")
    points = points.astype(np.float32)
    if not np.isfinite(points).all():
        raise QuarantineError("NaN or infinite coordinates")
    return points


def read_ply(data: bytes) -> np.ndarray:
    """The vertex element of a PLY file: x, y, z, then its other scalar properties, ``[N, 3 + C]``."""
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("no PLY header")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii").splitlines()
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in header[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise ValueError("property before any element")
            if words[1] == "list":
                elements[-1][2].append((words[4], "list"))
            else:
                if words[1] not in PLY_TYPES:
                    raise ValueError(f"unknown property type {words[1]}")
                elements[-1][2].append((words[2], words[1]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unknown PLY format {fmt}")
    if not elements or elements[0][0] != "vertex":
        raise ValueError("the first element must be 'vertex'")
    _, count, props = elements[0]
    names = [n for n, _ in props]
    if any(t == "list" for _, t in props) or not {"x", "y", "z"} <= set(names):
        raise ValueError("vertex element needs scalar x, y, z properties")
    order = [names.index(c) for c in "xyz"] + [i for i, n in enumerate(names) if n not in "xyz"]
    if fmt == "ascii":
        rows = data[body_start:].decode("ascii").split("\n")[:count]
        values = np.array([r.split()[: len(props)] for r in rows], dtype=np.float64)
        if values.shape != (count, len(props)):
            raise ValueError(f"expected {count} vertex rows of {len(props)} values")
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, endian + PLY_TYPES[t]) for n, t in props])
        if len(data) - body_start < dtype.itemsize * count:
            raise ValueError(f"truncated: {count} vertices need {dtype.itemsize * count} bytes")
        rec = np.frombuffer(data, dtype=dtype, count=count, offset=body_start)
        values = np.stack([rec[n].astype(np.float64) for n in names], axis=1) if count else np.zeros((0, len(names)))
    return values[:, order]


def read_text_points(data: bytes) -> np.ndarray:
    """Whitespace- or comma-separated rows of at least 3 numbers (ModelNet's ``x,y,z,nx,ny,nz``)."""
    rows = [r for r in re.split(r"[\r\n]+", data.decode("utf-8")) if r.strip() and not r.lstrip().startswith("#")]
    values = [np.array(re.split(r"[,\s]+", r.strip()), dtype=np.float64) for r in rows]
    if not values:
        return np.zeros((0, 3))
    width = min(len(v) for v in values)
    if width != max(len(v) for v in values):
        raise ValueError("rows have different numbers of values")
    return np.stack(values)


def read_off(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` and triangles ``[F, 3]`` of an OFF mesh (polygons fanned into triangles).
    Accepts ModelNet's ``OFF<V> <F> <E>`` first line."""
    tokens = data.decode("ascii").split()
    if not tokens or not tokens[0].startswith("OFF"):
        raise ValueError("no OFF header")
    rest = tokens[1:] if tokens[0] == "OFF" else [tokens[0][3:], *tokens[1:]]
    nv, nf = int(rest[0]), int(rest[1])
    nums = rest[3:]
    verts = np.array(nums[: 3 * nv], dtype=np.float64).reshape(nv, 3)
    pos, tris = 3 * nv, []
    for _ in range(nf):
        n = int(nums[pos])
        idx = [int(i) for i in nums[pos + 1 : pos + 1 + n]]
        tris += [(idx[0], idx[k], idx[k + 1]) for k in range(1, n - 1)]
        pos += 1 + n
    return verts, np.array(tris, dtype=np.int64).reshape(-1, 3)


def read_obj(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of an OBJ mesh (``v`` and ``f`` lines; ``a/b/c`` and negative indices)."""
    verts, tris = [], []
    for line in data.decode("utf-8").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "v":
            verts.append([float(w) for w in words[1:4]])
        elif words[0] == "f":
            idx = [int(w.split("/")[0]) for w in words[1:]]
            idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
            tris += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
    return np.array(verts, dtype=np.float64).reshape(-1, 3), np.array(tris, dtype=np.int64).reshape(-1, 3)


def sample_mesh(verts: np.ndarray, tris: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` points uniformly on the surface: triangles drawn by area, uniform barycentric coordinates."""
    if len(tris) == 0:
        raise QuarantineError("mesh has no faces")
    if tris.min() < 0 or tris.max() >= len(verts):
        raise QuarantineError(f"face index out of range (mesh has {len(verts)} vertices)")
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise QuarantineError("mesh has zero surface area or non-finite vertices")
    g = np.random.default_rng(seed)
    pick = g.choice(len(tris), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(g.random(n))[:, None], g.random(n)[:, None]
    return (1 - r1) * a[pick] + r1 * (1 - r2) * b[pick] + r1 * r2 * c[pick]
