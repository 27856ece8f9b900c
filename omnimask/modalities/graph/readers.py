"""Graph readers: per-graph ``.npz``, node-link ``.json``, ``.graphml``/``.gml`` (networkx), and
TU-format dataset folders (``DS_A.txt``, ``DS_graph_indicator.txt``, ...). Each graph becomes a
:class:`Graph` of numpy arrays, validated before it is stored."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from omnimask.core.interfaces import QuarantineError
from omnimask.io.npy import load_npz


@dataclass
class Graph:
    """One graph: ``edge_index [2, E]`` (0-based, int64), ``num_nodes``, and optional ``x [N, F]``
    node features, ``node_labels [N]``, ``edge_attr [E, A]``, ``y`` (graph label(s))."""

    edge_index: np.ndarray
    num_nodes: int
    x: Optional[np.ndarray] = None
    node_labels: Optional[np.ndarray] = None
    edge_attr: Optional[np.ndarray] = None
    y: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)

    def validate(self) -> "Graph":
        """Check shapes, index ranges and finiteness; raise :class:`QuarantineError` with the reason."""
        ei = np.asarray(self.edge_index)
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise QuarantineError(f"edge_index must be [2, E], got shape {list(ei.shape)}")
        if not np.issubdtype(ei.dtype, np.integer):
            raise QuarantineError(f"edge_index must hold integers, got {ei.dtype}")
        if self.num_nodes < 1:
            raise QuarantineError("graph has no nodes")
        if ei.size and (ei.min() < 0 or ei.max() >= self.num_nodes):
            raise QuarantineError(f"edge index out of range [0, {self.num_nodes}): min {ei.min()}, max {ei.max()}")
        self.edge_index = ei.astype(np.int64, copy=False)  # no second copy of a large int64 edge list
        for name, rows in (("x", self.num_nodes), ("node_labels", self.num_nodes), ("edge_attr", ei.shape[1])):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value)
            if value.shape[0] != rows:
                raise QuarantineError(f"{name} has {value.shape[0]} rows, expected {rows}")
            if value.dtype.kind not in "biuf":
                raise QuarantineError(f"{name} must be numeric, got {value.dtype}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise QuarantineError(f"NaN or infinite values in {name}")
            setattr(self, name, value)
        return self


def read_npz(data: bytes) -> Graph:
    """``x``, ``edge_index`` [, ``edge_attr``, ``y``, ``node_labels``, ``num_nodes``], loaded without pickle."""
    return graph_from_arrays(load_npz(data))


def graph_from_arrays(arrays: dict[str, np.ndarray]) -> Graph:
    """A :class:`Graph` of an ``.npz``'s arrays (``num_nodes`` from the array of that name, else ``x``'s
    or ``node_labels``' rows, else the largest node index + 1)."""
    if "edge_index" not in arrays:
        raise QuarantineError(f"npz graph needs an edge_index array (has {sorted(arrays)})")
    x = arrays.get("x")
    labels = arrays.get("node_labels")
    if "num_nodes" in arrays:
        n = int(arrays["num_nodes"])
    elif x is not None:
        n = int(x.shape[0])
    elif labels is not None:
        n = int(labels.shape[0])
    else:
        n = int(arrays["edge_index"].max()) + 1 if arrays["edge_index"].size else 0
    return Graph(arrays["edge_index"], n, x, labels, arrays.get("edge_attr"), arrays.get("y"))


def from_networkx(g: Any) -> Graph:
    """Nodes in their networkx order; node attribute ``x`` (a list) becomes features, a numeric
    ``node_label`` (or ``label``; GML uses ``label`` for node names) node labels; graph attribute ``y`` the label."""
    nodes = list(g.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    edges = np.array([[index[u], index[v]] for u, v in g.edges], dtype=np.int64).reshape(-1, 2).T
    if not g.is_directed():
        edges = np.concatenate([edges, edges[::-1]], axis=1)
    data = [g.nodes[v] for v in nodes]
    x = np.array([d["x"] for d in data], dtype=np.float32) if data and all("x" in d for d in data) else None
    labels = None
    for key in ("node_label", "label"):
        if data and all(isinstance(d.get(key), (int, float)) for d in data):
            labels = np.array([d[key] for d in data])
            break
    y = g.graph.get("y")
    return Graph(edges, len(nodes), x, labels, None, None if y is None else np.asarray(y))


NODE_LINK_EDGE_KEYS = ("edges", "links")
"""Where node-link JSON keeps its edge list: ``edges`` (networkx >= 3.6's ``node_link_data``), ``links`` (older)."""


def node_link_edges_key(data: object) -> str:
    """The key of the edge list in node-link JSON ``data``: whichever of ``edges`` and ``links`` it has.
    Raises :class:`QuarantineError` when it is not an object, or has neither key or both."""
    if not isinstance(data, dict):
        raise QuarantineError(f"node-link JSON must be an object with 'nodes' and 'edges', got a {type(data).__name__}")
    found = [key for key in NODE_LINK_EDGE_KEYS if key in data]
    if len(found) == 2:
        raise QuarantineError("node-link JSON has both an 'edges' and a 'links' list: which one is the graph's is ambiguous")
    if not found or "nodes" not in data:
        raise QuarantineError(f"node-link JSON needs a 'nodes' and an 'edges' (or 'links') list; it has keys {sorted(data)[:10]}")
    return found[0]


def read_node_link_json(path: Path) -> Any:
    """The networkx graph of a node-link ``.json`` file, with its edges under ``edges`` or ``links``."""
    import networkx as nx

    data = json.loads(path.read_bytes())  # JSON's own encoding detection (UTF-8, -16, -32), not the locale's
    return nx.node_link_graph(data, edges=node_link_edges_key(data))


def read_networkx_file(path: Path, ext: str) -> Graph:
    """A ``.json`` (node-link), ``.graphml`` or ``.gml`` graph file, through networkx."""
    import networkx as nx

    if ext == "json":
        g = read_node_link_json(path)
    elif ext == "graphml":
        g = nx.read_graphml(path)
    else:
        g = nx.read_gml(path, label="id")  # node ids as names: a "label" attribute stays a label
    return from_networkx(g)


def is_tu_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*_A.txt")) and any(path.glob("*_graph_indicator.txt"))


def read_tu_folder(path: Path) -> Iterator[tuple[str, Graph]]:
    """The graphs of a TU-format dataset folder, as ``(name, graph)`` with name ``DS#<graph id>``."""
    prefix = next(path.glob("*_A.txt")).name[: -len("_A.txt")]

    def table(suffix: str, dtype: type) -> Optional[np.ndarray]:
        f = path / f"{prefix}_{suffix}.txt"
        if not f.exists():
            return None
        try:
            return np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=2 if suffix in ("A", "node_attributes", "edge_attributes") else 1)
        except (ValueError, UnicodeDecodeError) as e:  # numpy's reason names the row and column
            raise QuarantineError(f"unparsable {f.name}: {e}") from None

    edges = table("A", np.int64)
    edges -= 1  # 1-based node ids over the whole dataset (in place: the edge list is the folder's largest array)
    indicator = table("graph_indicator", np.int64)
    graph_labels, node_labels = table("graph_labels", np.int64), table("node_labels", np.int64)
    node_attr, edge_attr = table("node_attributes", np.float32), table("edge_attributes", np.float32)
    if indicator is None or indicator.size == 0:
        raise QuarantineError(f"{prefix}_graph_indicator.txt lists no nodes")
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    if edges.shape[1] != 2:
        raise QuarantineError(f"{prefix}_A.txt must hold two node ids a line, it has {edges.shape[1]}")
    if edges.size and (edges.min() < 0 or edges.max() >= indicator.size):
        raise QuarantineError(
            f"{prefix}_A.txt names node {int(edges.min() if edges.min() < 0 else edges.max()) + 1}, "
            f"outside the {indicator.size} nodes (1-based) of {prefix}_graph_indicator.txt"
        )
    if (np.diff(indicator) < 0).any():
        raise QuarantineError(f"{prefix}_graph_indicator.txt is not sorted by graph id")
    num_graphs = int(indicator.max())
    starts = np.searchsorted(indicator, np.arange(1, num_graphs + 2))
    # edges grouped by the graph of their source node, in file order within a graph: one sort, not a scan of
    # all edges per graph (which made a folder of many graphs quadratic)
    edge_graph = indicator[edges[:, 0]]
    by_graph = np.argsort(edge_graph, kind="stable")
    edge_starts = np.searchsorted(edge_graph[by_graph], np.arange(1, num_graphs + 2))
    del edge_graph
    for gid in range(1, num_graphs + 1):
        lo, hi = int(starts[gid - 1]), int(starts[gid])
        sel = by_graph[edge_starts[gid - 1] : edge_starts[gid]]
        local = edges[sel]
        local -= lo
        yield (
            f"{prefix}#{gid}",
            Graph(
                local.T,
                hi - lo,
                None if node_attr is None else node_attr[lo:hi],
                None if node_labels is None else node_labels[lo:hi],
                None if edge_attr is None else edge_attr[sel],
                None if graph_labels is None else graph_labels[gid - 1 : gid],
            ),
        )
