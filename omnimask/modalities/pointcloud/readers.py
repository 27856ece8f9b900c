"""Point-cloud file readers: PLY (ASCII and binary), NPY, XYZ/TXT/CSV, and OFF/OBJ meshes
sampled to points by triangle area. Each returns float32 ``[N, 3 + C]`` (x, y, z first) or
raises :class:`QuarantineError` with the reason.

What a file may take in memory is checked before its data are parsed (:class:`PointLimits`): its size
(it is read whole), what a header declares (an ``.npy``'s shape, a PLY's or an OFF's counts: checked
against ``max_input_points``, against ``max_decoded_bytes`` as float64 values, and against the bytes the
file holds, so a header that lies is quarantined, never allocated for), and a text file's size times its
parser's expansion (:data:`TEXT_PARSE_FACTOR`). One file's read then peaks at about 2x
``max_decoded_bytes`` (its bytes and the float64 values they decode to)."""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimask.core.interfaces import QuarantineError
from omnimask.core.limits import over_limit
from omnimask.io.npy import load_npy, read_npy_header

PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
ROW_EXTS = {"xyz", "txt", "csv", "pts"}
POINT_EXTS = {"ply", "npy"} | ROW_EXTS
MESH_EXTS = {"off", "obj"}

TEXT_PARSE_FACTOR = {**dict.fromkeys(ROW_EXTS, 10), "ply": 10, "off": 32, "obj": 32}
"""Peak memory of ingesting a text file, as a multiple of its size (an ASCII PLY: of the whole file), with
margin over what was measured (numpy 2.4, 1-2M points): point rows and ASCII PLY bodies 2.4x (long numbers)
to 8.5x ("0 0 0" rows: 6 bytes a point, 24 as float64, then 12 as float32; numpy's C reader), OFF and OBJ
meshes 12x to 24x (Python lists of tokens and faces, then the triangles' corners)."""

VALUE_BYTES = 8
"""Bytes of one value once read: the readers parse to float64, what ``max_decoded_bytes`` counts."""

_ROW_SEPARATORS = bytes.maketrans(b",\r", b" \n")  # ModelNet's commas and old Mac line ends, for numpy's reader
_OFF_HEADER = re.compile(rb"\s*OFF\s*([-+]?[0-9]+)\s+([-+]?[0-9]+)")  # "OFF\n8 12 0" and ModelNet's "OFF8 12 0"


@dataclass(frozen=True)
class PointLimits:
    """What one file may declare and take in memory (None: no bound): the ingest options of the same names."""

    max_input_points: int | None = None
    max_decoded_bytes: int | None = None

    def check_points(self, count: int, what: str) -> None:
        """Quarantine ``count`` points (``what``: ``"point count"``) over ``max_input_points``."""
        if self.max_input_points is not None and count > self.max_input_points:
            raise over_limit(what, count, "max_input_points", self.max_input_points)

    def check_bytes(self, nbytes: int, what: str) -> None:
        """Quarantine ``nbytes`` (``what`` says how they were counted) over ``max_decoded_bytes``."""
        if self.max_decoded_bytes is not None and nbytes > self.max_decoded_bytes:
            raise over_limit(what, nbytes, "max_decoded_bytes", self.max_decoded_bytes)

    def check_declared(self, count: int, values: int, source: str) -> None:
        """Quarantine ``count`` points of ``values`` values each, declared by ``source`` (``"the PLY header"``)."""
        self.check_points(count, f"point count (declared by {source})")
        self.check_bytes(count * values * VALUE_BYTES, f"decoded size (bytes, as float64; declared by {source})")

    def check_text(self, size: int, ext: str) -> None:
        """Quarantine a text file of ``size`` bytes whose parsing would take more than ``max_decoded_bytes``."""
        factor = TEXT_PARSE_FACTOR[ext]
        self.check_bytes(size * factor, f"memory to parse this .{ext} text ({factor} x its {size:,} bytes)")


NO_LIMITS = PointLimits()


def read_point_file(path: Path, mesh_points: int, seed: int, *, limits: PointLimits = NO_LIMITS) -> np.ndarray:
    """Points of ``path`` by its extension; meshes give ``mesh_points`` points sampled by area with ``seed``.
    The file is read only once its size passes ``limits``, its data parsed only once its header does."""
    ext = path.suffix.lower().lstrip(".")
    if ext not in POINT_EXTS | MESH_EXTS:
        raise QuarantineError(f"unsupported point-cloud format .{ext} (use {', '.join(sorted(POINT_EXTS | MESH_EXTS))})")
    size = path.stat().st_size
    if not size:
        raise QuarantineError("empty file")
    limits.check_bytes(size, f"file size of the .{ext} (bytes; it is read whole)")
    if ext in ROW_EXTS | MESH_EXTS:
        limits.check_text(size, ext)  # an ASCII PLY is checked once its header says it is one
    data = path.read_bytes()
    try:
        if ext == "ply":
            points = read_ply(data, limits)
        elif ext == "npy":
            points = read_npy_points(data, limits)
        elif ext in ROW_EXTS:
            points = read_text_points(data)
            limits.check_points(len(points), "point count")
        else:
            verts, tris = read_off(data, limits) if ext == "off" else read_obj(data)
            limits.check_points(len(verts), "mesh vertex count")
            points = sample_mesh(verts, tris, mesh_points, seed)
    except QuarantineError:
        raise
    except (ValueError, IndexError, UnicodeDecodeError, EOFError) as e:
        raise QuarantineError(f"unparsable .{ext} file: {e}") from None
    del data  # parsed into new arrays: the file's bytes need not outlive them into the float32 copy
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


def read_npy_points(data: bytes, limits: PointLimits = NO_LIMITS) -> np.ndarray:
    """The array of an ``.npy`` file, loaded once its header's shape passes ``limits`` and fits the file."""
    header = read_npy_header(io.BytesIO(data))
    if header is None:
        raise ValueError("not an .npy file (no NumPy magic)")
    have = len(data) - header.offset
    if header.nbytes > have:
        raise QuarantineError(
            f".npy header declares shape {header.shape} of {header.dtype} ({header.nbytes:,} bytes), "
            f"but the file holds {have:,} bytes of data: truncated, or a header that lies"
        )
    count = header.shape[0] if header.shape else 1
    limits.check_declared(count, math.prod(header.shape[1:]), "the .npy header")
    return load_npy(data)


@dataclass(frozen=True)
class PlyHeader:
    """A PLY header's ``format``, its first element's vertex ``count`` and scalar properties ``props``
    (``(name, type)``), and where the body starts (``body``)."""

    format: str
    count: int
    props: list[tuple[str, str]]
    body: int


def read_ply_header(data: bytes) -> PlyHeader:
    """The header of a PLY file; raises ValueError where it is not one this reader takes."""
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
    return PlyHeader(fmt, count, props, body_start)


def read_ply(data: bytes, limits: PointLimits = NO_LIMITS) -> np.ndarray:
    """The vertex element of a PLY file: x, y, z, then its other scalar properties, ``[N, 3 + C]`` float64;
    its data are read only once the header's vertex count passes ``limits`` and fits the file."""
    header = read_ply_header(data)
    count, props, have = header.count, header.props, len(data) - header.body
    if count < 0:
        raise QuarantineError(f"PLY header declares a negative vertex count ({count:,})")
    if header.format == "ascii":
        limits.check_text(len(data), "ply")
        need = count * (2 * len(props) - 1)  # a value is at least one character, then a space or a line end
    else:
        dtype = np.dtype([(n, ("<" if header.format == "binary_little_endian" else ">") + PLY_TYPES[t]) for n, t in props])
        need = count * dtype.itemsize
    if need > have:
        raise QuarantineError(
            f"PLY header declares {count:,} vertices ({need:,} bytes at least), "
            f"but the file holds {have:,} bytes after its header: truncated, or a header that lies"
        )
    limits.check_declared(count, len(props), "the PLY header")
    names = [n for n, _ in props]
    order = [names.index(c) for c in "xyz"] + [i for i, n in enumerate(names) if n not in "xyz"]
    if count == 0:
        return np.zeros((0, len(props)))
    if header.format == "ascii":
        body = io.BytesIO(data)
        body.seek(header.body)
        values = np.loadtxt(body, max_rows=count, usecols=order, ndmin=2, comments=None)
        if values.shape != (count, len(props)):
            raise ValueError(f"expected {count} vertex rows of {len(props)} values")
        return values
    rec = np.frombuffer(data, dtype=dtype, count=count, offset=header.body)
    values = np.empty((count, len(props)))  # filled a column at a time: no float64 copy per property
    for column, i in enumerate(order):
        values[:, column] = rec[names[i]]
    return values


def read_text_points(data: bytes) -> np.ndarray:
    """Whitespace- or comma-separated rows of at least 3 numbers (ModelNet's ``x,y,z,nx,ny,nz``); ``#``
    starts a comment. NumPy's C reader parses them: float64 rows and one copy of the text, no Python
    object per row or value (which took 75x the text's size)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported as "no points"
        values = np.loadtxt(io.BytesIO(data.translate(_ROW_SEPARATORS)), comments="#", ndmin=2)
    return values if values.size else np.zeros((0, 3))


def read_off(data: bytes, limits: PointLimits = NO_LIMITS) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` and triangles ``[F, 3]`` of an OFF mesh (polygons fanned into triangles).
    Accepts ModelNet's ``OFF<V> <F> <E>`` first line. The counts are checked before the body is read."""
    header = _OFF_HEADER.match(data)
    if header is None:
        raise ValueError("no OFF header")
    nv, nf = int(header[1]), int(header[2])
    if nv < 0 or nf < 0:
        raise QuarantineError(f"OFF header declares a negative count ({nv:,} vertices, {nf:,} faces)")
    room = (len(data) - header.end() + 1) // 2  # the most tokens the rest can hold: a character and a separator each
    if 3 * nv + nf > room:
        raise QuarantineError(
            f"OFF header declares {nv:,} vertices and {nf:,} faces, more than the "
            f"{len(data):,}-byte file can hold ({3 * nv + nf:,} numbers at least)"
        )
    limits.check_declared(nv, 3, "the OFF header")
    nums = data[header.end() :].decode("ascii").split()[1:]  # after the edge count
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
