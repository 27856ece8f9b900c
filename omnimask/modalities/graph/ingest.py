"""Graph ingest: one sample per graph, stored as ``.npz`` (read back without pickle).

What one input may take in memory is bounded before it is parsed: an ``.npz`` by its zip directory's
declared sizes and its members' ``.npy`` headers (no member is inflated until they pass), a text graph
(node-link ``.json``, ``.graphml``, ``.gml``, a TU folder) by its size times its parser's measured
expansion (:data:`TEXT_PARSE_FACTOR`). One input's ingest then peaks at about 3x ``max_decoded_bytes``
(measured: 2.6-3.0x an ``.npz``'s declared size, which is its file, an inflated member and its array, then
the arrays and the stored sample; a text graph: at most about 1x, by the factors).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimask.core.interfaces import EncodedSample, QuarantineError
from omnimask.core.limits import over_limit
from omnimask.io.npy import NpzMember, read_npz_directory
from omnimask.modalities.graph.readers import Graph, is_tu_folder, read_networkx_file, read_npz, read_tu_folder

GRAPH_EXTS = {"npz", "json", "graphml", "gml"}

TEXT_PARSE_FACTOR = {"json": 24, "graphml": 40, "gml": 20, "tu": 16}
"""Peak memory of parsing a text graph, as a multiple of its size in bytes (a TU folder: of its files
together), with margin over what was measured (networkx 3.6, numpy 2.4; graphs of 50k-600k nodes): node-link
JSON 18-21x (json.loads' dicts, then networkx's adjacency dicts), GraphML 30-32x (the whole XML tree),
GML 14-15x, a TU folder 2x (7-digit ids) to 13x (a one-graph folder of "1, 2" lines: 5 bytes an edge)."""

MAX_NODES, MAX_EDGES = 5_000_000, 125_000_000
"""Default ``max_nodes``: 2x ogbn-products' 2.4M nodes (GraphMAE's largest graphs: Reddit's 233k and ogbn-arxiv's
169k nodes). Default ``max_edges``: above the directed edges of Reddit (114.6M) and ogbn-products (123.7M), and
about the most that an int64 ``edge_index`` within the default ``max_decoded_bytes`` holds (2 GiB / 16 = 134M)."""


@dataclass
class GraphIngestConfig:
    """Options of ``omnimask preprocess graph``."""

    max_nodes: int | None = MAX_NODES
    """Graphs with more nodes are quarantined, an .npz's from its headers before it is inflated (None: no limit)."""
    max_edges: int | None = MAX_EDGES
    """Graphs with more edges (edge_index columns; an undirected edge counts twice) are quarantined (None: no limit)."""
    max_decoded_bytes: int | None = 2**31
    """Inputs that would take more memory are quarantined: an .npz's declared arrays, a text graph's size x parse
    factor (None: no limit)."""

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_edges", "max_decoded_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or null for no limit), got {value}")


def encode_graph(graph: Graph, opts: GraphIngestConfig) -> EncodedSample:
    """Check ``graph``'s size against the limits, validate it and store its arrays; the ``.json`` gets its
    sizes and what it carries."""
    check_counts(nodes=graph.num_nodes, edges=_dim(np.shape(graph.edge_index), 1), opts=opts)
    graph.validate()
    arrays = {"edge_index": graph.edge_index, "num_nodes": np.array(graph.num_nodes, dtype=np.int64)}
    for name in ("x", "node_labels", "edge_attr", "y"):
        value = getattr(graph, name)
        if value is not None:
            arrays[name] = np.asarray(value)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    meta = {
        "num_nodes": graph.num_nodes,
        "num_edges": int(graph.edge_index.shape[1]),
        "num_node_features": None if graph.x is None else int(np.asarray(graph.x).reshape(graph.num_nodes, -1).shape[1]),
        "has_node_labels": graph.node_labels is not None,
        "y": None if graph.y is None else np.asarray(graph.y).reshape(-1).tolist(),
    }
    return EncodedSample("npz", buf.getvalue(), meta, size=graph.num_nodes)


def check_counts(*, nodes: int | None, edges: int | None, opts: GraphIngestConfig, source: str = "") -> None:
    """Quarantine a graph of more than ``max_nodes`` nodes or ``max_edges`` edges (None: not known);
    ``source`` says where a count comes from (``" (rows of x)"``)."""
    if opts.max_nodes is not None and nodes is not None and nodes > opts.max_nodes:
        raise over_limit(f"node count{source}", nodes, "max_nodes", opts.max_nodes)
    if opts.max_edges is not None and edges is not None and edges > opts.max_edges:
        raise over_limit(f"edge count{source}", edges, "max_edges", opts.max_edges)


def check_decoded_bytes(nbytes: int, what: str, opts: GraphIngestConfig) -> None:
    """Quarantine an input that would take ``nbytes`` in memory (``what`` says how that was counted)."""
    if opts.max_decoded_bytes is not None and nbytes > opts.max_decoded_bytes:
        raise over_limit(what, nbytes, "max_decoded_bytes", opts.max_decoded_bytes)


def check_text_size(size: int, kind: str, opts: GraphIngestConfig) -> None:
    """Quarantine a text graph of ``size`` bytes (``kind``: an extension or ``"tu"``) before it is parsed,
    when parsing it would take more than ``max_decoded_bytes`` (its size x :data:`TEXT_PARSE_FACTOR`)."""
    factor = TEXT_PARSE_FACTOR[kind]
    name = "TU folder" if kind == "tu" else f".{kind} file"
    check_decoded_bytes(size * factor, f"memory to parse this {name} ({factor} x its {size:,} bytes)", opts)


def check_npz_directory(members: list[NpzMember], opts: GraphIngestConfig) -> None:
    """Quarantine an ``.npz`` from what it declares, before any member is inflated: an ``.npy`` header
    declaring more data than its member holds, more bytes in all than ``max_decoded_bytes`` (an
    ``edge_index`` counted as the int64 it is stored as), or more nodes (rows of ``x``/``node_labels``) or
    edges (columns of ``edge_index``, rows of ``edge_attr``) than allowed. A ``num_nodes`` array is a
    scalar: its value is checked once read (:func:`encode_graph`)."""
    for m in members:
        if m.header is not None and m.header.offset + m.header.nbytes > m.size:
            raise QuarantineError(
                f"{m.name}.npy's header declares shape {m.header.shape} of {m.header.dtype} "
                f"({m.header.nbytes:,} bytes), more than the {m.size - m.header.offset:,} bytes its member holds"
            )
    check_decoded_bytes(sum(map(_decoded_size, members)), "declared size of the .npz's arrays (bytes; edge_index as int64)", opts)
    shapes = {m.name: m.header.shape for m in members if m.header is not None}
    for name in ("x", "node_labels"):
        check_counts(nodes=_dim(shapes.get(name), 0), edges=None, opts=opts, source=f" (rows of {name})")
    check_counts(nodes=None, edges=_dim(shapes.get("edge_index"), 1), opts=opts, source=" (columns of edge_index)")
    check_counts(nodes=None, edges=_dim(shapes.get("edge_attr"), 0), opts=opts, source=" (rows of edge_attr)")


def _decoded_size(member: NpzMember) -> int:
    """Bytes ``member`` takes once read: its declared size, or for ``edge_index`` what it takes as int64
    (validation widens it: an int16 edge list grows 4x)."""
    if member.name != "edge_index" or member.header is None:
        return member.size
    return max(member.size, member.header.offset + math.prod(member.header.shape) * 8)


def _dim(shape: tuple[int, ...] | None, axis: int) -> int | None:
    """``shape[axis]``, or None where there is no such array or axis (validation reports the shape later)."""
    return shape[axis] if shape is not None and len(shape) > axis else None


def read_npz_file(path: Path, opts: GraphIngestConfig) -> Graph:
    """The graph of an ``.npz`` file, read whole once its size passes, and inflated once its declarations pass."""
    data = path.read_bytes()
    check_npz_directory(read_npz_directory(data), opts)
    return read_npz(data)  # load_npz inflates a member no further than its declared size


def tu_folder_size(path: Path) -> int:
    """Bytes of the files of a TU folder (all of them are parsed: ``DS_A.txt``, labels, attributes)."""
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def encode_graph_input(path: Path, opts: GraphIngestConfig) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
    """A TU folder gives one record per graph (named by its graph id); a file, one graph."""
    if is_tu_folder(path):
        check_text_size(tu_folder_size(path), "tu", opts)
        for name, graph in read_tu_folder(path):
            try:
                yield name.rsplit("#", 1)[1], encode_graph(graph, opts)
            except QuarantineError as e:
                yield name.rsplit("#", 1)[1], e
        return
    ext = path.suffix.lower().lstrip(".")
    if ext not in GRAPH_EXTS:
        raise QuarantineError(f"unsupported graph format .{ext} (use {', '.join(sorted(GRAPH_EXTS))} or a TU folder)")
    size = path.stat().st_size
    if not size:
        raise QuarantineError("empty file")
    if ext == "npz":
        check_decoded_bytes(size, "file size of the .npz (bytes; it is read whole)", opts)
    else:
        check_text_size(size, ext, opts)
    try:
        graph = read_npz_file(path, opts) if ext == "npz" else read_networkx_file(path, ext)
    except QuarantineError:
        raise
    except Exception as e:  # parsers raise many kinds: each is a reason, not a crash
        raise QuarantineError(f"unparsable .{ext} graph: {type(e).__name__}: {e}") from None
    yield "", encode_graph(graph, opts)
