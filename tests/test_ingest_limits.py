"""Bounded memory for graph and point-cloud inputs: an .npz whose member inflates to 1.6 GB is quarantined
from its declarations with a few MB of memory; node, edge, byte and point limits quarantine just above and
keep just at the limit; headers that lie (PLY, NPY, OFF, an .npz member's) are quarantined, never allocated for."""

import json
import os
import re
import time
import tracemalloc
import zipfile
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from peak_rss import peak_rss_growth

from omnimask.core.interfaces import QuarantineError
from omnimask.data.preprocess import preprocess
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.graph.ingest import TEXT_PARSE_FACTOR, GraphIngestConfig, encode_graph_input
from omnimask.modalities.pointcloud.ingest import PointCloudIngestConfig, encode_point_file
from omnimask.modalities.pointcloud.readers import TEXT_PARSE_FACTOR as POINT_TEXT_FACTOR

MB = 1 << 20
BOMB_NODES = 100_000_000  # x [N, 4] float32: 1.6 GB inflated
EDGES = np.array([[0, 1, 2], [1, 2, 0]])


def npy_header(f, shape: tuple[int, ...], dtype: str) -> None:
    """An .npy header declaring ``shape`` and ``dtype``, whatever data follow."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((0,), dtype))
    header["shape"] = shape
    np.lib.format.write_array_header_2_0(f, header)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """The issue's .npz bomb, written by streaming zeros (never held): ~7 MB deflated at level 1 (fast)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    zeros = bytes(16 * MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w") as f:
            npy_header(f, (BOMB_NODES, 4), "<f4")
            for left in range(BOMB_NODES * 16, 0, -len(zeros)):
                f.write(zeros[: min(left, len(zeros))])
        with archive.open("edge_index.npy", "w") as f:
            np.lib.format.write_array(f, EDGES)
    assert zipfile.ZipFile(path).getinfo("x.npy").file_size > 1_600_000_000
    return path


def graph_reason(path: Path, **options) -> str | None:
    """The quarantine reason of a one-graph input, or None where it is kept."""
    try:
        [(_, result)] = encode_graph_input(path, GraphIngestConfig(**options))
    except QuarantineError as e:
        return str(e)
    return str(result) if isinstance(result, QuarantineError) else None


def limit_reason(what: str, value: int, option: str, limit: int) -> str:
    """The start of :func:`omnimask.core.limits.over_limit`'s reason."""
    return f"{what} {value:,} exceeds {option}={limit:,} "


def test_npz_bomb_is_quarantined_from_its_headers_in_bounded_memory(bomb):
    reason = graph_reason(bomb)
    assert reason is not None and reason.startswith(limit_reason("node count (rows of x)", BOMB_NODES, "max_nodes", 5_000_000)), reason
    assert "`-o max_nodes=N`" in reason
    grown = peak_rss_growth(
        setup="from pathlib import Path\nfrom omnimask.core.interfaces import QuarantineError\n"
        "from omnimask.modalities.graph.ingest import GraphIngestConfig, encode_graph_input",
        body=f"try:\n    list(encode_graph_input(Path({str(bomb)!r}), GraphIngestConfig()))\nexcept QuarantineError:\n    pass",
    )
    assert grown < 100 * MB, grown  # today's code: ~3.7 GB (and the graph kept)


def write_npz(path: Path, *, compressed: bool = False, **arrays) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def test_graph_node_and_edge_limits_keep_at_and_quarantine_just_above(tmp_path):
    n = 100
    g = write_npz(tmp_path / "g.npz", x=np.zeros((n, 2), np.float32), edge_index=np.tile(EDGES, 10))  # 30 edges
    assert graph_reason(g, max_nodes=n, max_edges=30) is None
    assert graph_reason(g, max_nodes=n - 1).startswith(limit_reason("node count (rows of x)", n, "max_nodes", n - 1))
    assert graph_reason(g, max_edges=29).startswith(limit_reason("edge count (columns of edge_index)", 30, "max_edges", 29))
    labels = write_npz(tmp_path / "labels.npz", node_labels=np.zeros(n, np.int64), edge_index=EDGES)
    assert graph_reason(labels, max_nodes=n - 1).startswith(limit_reason("node count (rows of node_labels)", n, "max_nodes", n - 1))
    # a num_nodes scalar is read once the declared sizes pass, then checked
    scalar = write_npz(tmp_path / "scalar.npz", num_nodes=np.array(10**12), edge_index=EDGES)
    assert graph_reason(scalar).startswith(limit_reason("node count", 10**12, "max_nodes", 5_000_000))
    # a graph of a node-link JSON is counted once parsed: an undirected edge counts twice
    path = tmp_path / "ring.json"
    path.write_text(json.dumps(nx.node_link_data(nx.cycle_graph(8), edges="edges")))
    assert graph_reason(path, max_nodes=8, max_edges=16) is None
    assert graph_reason(path, max_edges=15).startswith(limit_reason("edge count", 16, "max_edges", 15))


def test_npz_declared_size_limit_keeps_at_and_quarantines_just_above(tmp_path):
    g = write_npz(tmp_path / "g.npz", compressed=True, x=np.zeros((5000, 8), np.float32), edge_index=EDGES)
    declared = sum(info.file_size for info in zipfile.ZipFile(g).infolist())
    assert g.stat().st_size < declared  # deflated: the declared size binds, not the file's
    assert graph_reason(g, max_decoded_bytes=declared) is None
    assert graph_reason(g, max_decoded_bytes=declared - 1).startswith(
        limit_reason("declared size of the .npz's arrays (bytes; edge_index as int64)", declared, "max_decoded_bytes", declared - 1)
    )
    narrow = write_npz(tmp_path / "narrow.npz", edge_index=np.tile(EDGES, 1000).astype(np.int16))
    as_int64 = 128 + 2 * 3000 * 8  # the header, then 3,000 edges widened to int64 (4x their int16 bytes)
    assert graph_reason(narrow, max_decoded_bytes=as_int64) is None
    assert graph_reason(narrow, max_decoded_bytes=as_int64 - 1).startswith(
        limit_reason("declared size of the .npz's arrays (bytes; edge_index as int64)", as_int64, "max_decoded_bytes", as_int64 - 1)
    )
    stored = write_npz(tmp_path / "stored.npz", x=np.zeros((5000, 8), np.float32), edge_index=EDGES)
    size = stored.stat().st_size  # the file is read whole: its size counts too
    assert graph_reason(stored, max_decoded_bytes=size - 1).startswith(
        limit_reason("file size of the .npz (bytes; it is read whole)", size, "max_decoded_bytes", size - 1)
    )


def test_npz_member_whose_header_lies_is_quarantined_before_inflating(tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w") as f:
            npy_header(f, (10**9, 4), "<f4")
            f.write(bytes(64))
        with archive.open("edge_index.npy", "w") as f:
            np.lib.format.write_array(f, EDGES)
    tracemalloc.start()
    try:
        reason = graph_reason(path, max_nodes=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (
        reason == "x.npy's header declares shape (1000000000, 4) of float32 (16,000,000,000 bytes), more than the 64 bytes its member holds"
    )
    assert peak < 5 * MB, peak


def test_text_graph_sizes_are_bounded_by_their_parse_factor(tmp_path):
    path = tmp_path / "ring.json"
    path.write_text(json.dumps(nx.node_link_data(nx.cycle_graph(50), edges="edges")))
    need = path.stat().st_size * TEXT_PARSE_FACTOR["json"]
    assert graph_reason(path, max_decoded_bytes=need) is None
    reason = graph_reason(path, max_decoded_bytes=need - 1)
    assert re.match(
        rf"memory to parse this \.json file \(24 x its {path.stat().st_size:,} bytes\) {need:,} exceeds max_decoded_bytes", reason
    ), reason
    # a TU folder: its files together, before any is parsed; then each graph's counts, one record each
    tu = tmp_path / "DS"
    tu.mkdir()
    (tu / "DS_A.txt").write_text("1, 2\n2, 1\n2, 3\n3, 2\n4, 5\n5, 4\n5, 6\n6, 7\n7, 4\n")
    (tu / "DS_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n2\n2\n")
    size = sum(f.stat().st_size for f in tu.iterdir())
    records = dict(encode_graph_input(tu, GraphIngestConfig(max_nodes=3, max_edges=4)))
    assert records["1"].meta["num_nodes"] == 3
    assert str(records["2"]).startswith(limit_reason("node count", 4, "max_nodes", 3))
    with pytest.raises(QuarantineError, match=f"memory to parse this TU folder \\(16 x its {size:,} bytes\\)"):
        list(encode_graph_input(tu, GraphIngestConfig(max_decoded_bytes=size * 16 - 1)))


def point_reason(path: Path, **options) -> str | None:
    """The quarantine reason of a point-cloud file, or None where it is kept."""
    try:
        encode_point_file(path, PointCloudIngestConfig(**{"min_points": 1, "mesh_points": 64, **options}))
    except QuarantineError as e:
        return str(e)
    return None


def ply_bytes(fmt: str, count: int | str, body: bytes) -> bytes:
    return (
        f"ply\nformat {fmt} 1.0\nelement vertex {count}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    ).encode() + body


LIES = {
    "binary.ply": (
        ply_bytes("binary_little_endian", 2**40, bytes(1000)),
        "PLY header declares 1,099,511,627,776 vertices (13,194,139,533,312 bytes at least), but the file holds 1,000 bytes",
    ),
    "ascii.ply": (ply_bytes("ascii", 2**40, b"0 0 0\n" * 100), "PLY header declares 1,099,511,627,776 vertices (5,497,558,138,880 bytes"),
    "negative.ply": (ply_bytes("binary_little_endian", -1, bytes(1200)), "PLY header declares a negative vertex count (-1)"),
    "huge.off": (
        b"OFF\n4 1000000000000 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n",
        "OFF header declares 4 vertices and 1,000,000,000,000 faces, more than the 54-byte file can hold",
    ),
    "negative.off": (b"OFF\n-4 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "OFF header declares a negative count (-4 vertices, 1 faces)"),
}


@pytest.mark.parametrize("name", [*LIES, "huge.npy", "negative.npy"])
def test_point_cloud_header_lies_are_quarantined_without_allocating(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".npy"):
        with open(path, "wb") as f:
            npy_header(f, (2**40, 3) if name == "huge.npy" else (-5, 3), "<f4")
            f.write(bytes(1024 - f.tell()))
        expected = (
            ".npy header declares shape (1099511627776, 3) of float32 (13,194,139,533,312 bytes), but the file holds 896 bytes"
            if name == "huge.npy"
            else "unparsable .npy file: .npy header declares a negative dimension: shape (-5, 3)"
        )
    else:
        data, expected = LIES[name]
        path.write_bytes(data)
    started = time.perf_counter()
    tracemalloc.start()
    try:
        reason = point_reason(path, max_input_points=None, max_decoded_bytes=None)  # the lie, not a limit, decides
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reason is not None and reason.startswith(expected), reason
    assert peak < 2 * MB and time.perf_counter() - started < 1, (peak, time.perf_counter() - started)


def test_max_input_points_is_checked_from_headers_and_after_parsing_text(tmp_path):
    points = np.random.default_rng(0).random((100, 3)).astype(np.float32)
    np.save(tmp_path / "p.npy", points)
    (tmp_path / "p.ply").write_bytes(ply_bytes("binary_little_endian", 100, points.tobytes()))
    (tmp_path / "p.xyz").write_text("".join(f"{x} {y} {z}\n" for x, y, z in points))
    (tmp_path / "m.off").write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    for name, what, count in (
        ("p.npy", "point count (declared by the .npy header)", 100),
        ("p.ply", "point count (declared by the PLY header)", 100),
        ("p.xyz", "point count", 100),
        ("m.off", "point count (declared by the OFF header)", 4),
        ("m.obj", "mesh vertex count", 4),
    ):
        assert point_reason(tmp_path / name, max_input_points=count, mesh_points=count) is None, name
        reason = point_reason(tmp_path / name, max_input_points=count - 1, mesh_points=count - 1)
        assert reason is not None and reason.startswith(limit_reason(what, count, "max_input_points", count - 1)), (name, reason)
    # the declared values as float64, and a text file's size x its parse factor, count against max_decoded_bytes
    assert point_reason(tmp_path / "p.npy", max_decoded_bytes=100 * 3 * 8) is None
    assert point_reason(tmp_path / "p.npy", max_decoded_bytes=100 * 3 * 8 - 1).startswith(
        limit_reason("decoded size (bytes, as float64; declared by the .npy header)", 2400, "max_decoded_bytes", 2399)
    )
    size = (tmp_path / "p.xyz").stat().st_size
    assert point_reason(tmp_path / "p.xyz", max_decoded_bytes=size * POINT_TEXT_FACTOR["xyz"]) is None
    assert point_reason(tmp_path / "p.xyz", max_decoded_bytes=size * POINT_TEXT_FACTOR["xyz"] - 1).startswith(
        f"memory to parse this .xyz text ({POINT_TEXT_FACTOR['xyz']} x its {size:,} bytes)"
    )
    with pytest.raises(ValueError, match=r"mesh_points \(8192\) must be <= max_input_points \(1000\)"):
        PointCloudIngestConfig(max_input_points=1000)


def test_point_cloud_ingest_peaks_within_a_small_multiple_of_max_decoded_bytes(tmp_path):
    """A float64 .npy and the densest text rows ("0 0 0": 6 bytes a point, 24 as float64), each just under
    the limit, ingested one after the other: the peak stays under 3x the limit (measured: 2.0x, the .npy's
    bytes and its copy; today's text parser alone takes 75x an .xyz's size, here 7.5x the limit)."""
    limit = 48 * MB
    np.save(tmp_path / "big.npy", np.ones((limit // 24 - 8, 3)))
    (tmp_path / "zeros.xyz").write_bytes(b"0 0 0\n" * (limit // POINT_TEXT_FACTOR["xyz"] // 6))
    body = "".join(
        f"encode_point_file(Path({str(tmp_path / name)!r}), PointCloudIngestConfig(max_decoded_bytes={limit}))\n"
        for name in ("zeros.xyz", "big.npy")
    )
    grown = peak_rss_growth(
        setup="from pathlib import Path\nfrom omnimask.modalities.pointcloud.ingest import PointCloudIngestConfig, encode_point_file",
        body=body,
    )
    assert grown < 3 * limit, grown / limit


def test_preprocess_accounts_for_the_bomb_as_quarantined(bomb, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    os.link(bomb, raw / "bomb.npz")  # the module's bomb, not written twice
    write_npz(raw / "good.npz", x=np.ones((3, 2), np.float32), edge_index=EDGES)
    (raw / "ring.json").write_text(json.dumps(nx.node_link_data(nx.cycle_graph(6), edges="edges")))
    m = preprocess("graph", raw, tmp_path / "out", executor="processes", num_cpus=1)
    assert m.num_inputs == m.num_samples + m.num_quarantined == 3 and m.num_quarantined == 1
    [entry] = read_quarantine(tmp_path / "out")
    assert entry["source"].endswith("bomb.npz") and "exceeds max_nodes=5,000,000" in entry["reason"], entry
