"""Graph ingest: one sample per graph, stored as ``.npz`` (read back without pickle)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from omnimask.modalities.base import EncodedSample, QuarantineError
from omnimask.modalities.graph.readers import Graph, is_tu_folder, read_networkx_file, read_npz, read_tu_folder

GRAPH_EXTS = {"npz", "json", "graphml", "gml"}


@dataclass
class GraphIngestConfig:
    """Options of ``omnimask preprocess graph``."""

    max_nodes: Optional[int] = None
    """Graphs with more nodes are quarantined (None: no limit)."""

    def __post_init__(self) -> None:
        if self.max_nodes is not None and self.max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {self.max_nodes}")


def encode_graph(graph: Graph, opts: GraphIngestConfig) -> EncodedSample:
    """Validate ``graph`` and store its arrays; the ``.json`` gets its sizes and what it carries."""
    graph.validate()
    if opts.max_nodes is not None and graph.num_nodes > opts.max_nodes:
        raise QuarantineError(f"{graph.num_nodes} nodes exceed max_nodes={opts.max_nodes}")
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


def encode_graph_input(path: Path, opts: GraphIngestConfig) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
    """A TU folder gives one record per graph (named by its graph id); a file, one graph."""
    if is_tu_folder(path):
        for name, graph in read_tu_folder(path):
            try:
                yield name.rsplit("#", 1)[1], encode_graph(graph, opts)
            except QuarantineError as e:
                yield name.rsplit("#", 1)[1], e
        return
    ext = path.suffix.lower().lstrip(".")
    if ext not in GRAPH_EXTS:
        raise QuarantineError(f"unsupported graph format .{ext} (use {', '.join(sorted(GRAPH_EXTS))} or a TU folder)")
    data = path.read_bytes()
    if not data:
        raise QuarantineError("empty file")
    try:
        graph = read_npz(data) if ext == "npz" else read_networkx_file(path, ext)
    except QuarantineError:
        raise
    except Exception as e:  # parsers raise many kinds: each is a reason, not a crash
        raise QuarantineError(f"unparsable .{ext} graph: {type(e).__name__}: {e}") from None
    yield "", encode_graph(graph, opts)
