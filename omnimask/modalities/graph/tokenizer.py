"""Graph tokenizer: one token per node (its feature vector), the edges alongside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from omnimask.core.interfaces import Tokenizer, TokenLayout, Tokens
from omnimask.core.registry import register
from omnimask.modalities.graph.readers import Graph


def node_features(graph: Graph, kind: str, dim: int) -> np.ndarray:
    """Float32 features ``[N, dim]`` of ``kind``: ``attributes`` (the graph's ``x``), ``labels``
    (one-hot node labels), ``degree`` (one-hot in-degree, clipped to ``dim - 1``), or ``auto``: the
    first of these the graph has (every graph has a degree)."""
    if kind == "auto":
        kind = "attributes" if graph.x is not None else "labels" if graph.node_labels is not None else "degree"
    n = graph.num_nodes
    if kind == "attributes":
        if graph.x is None:
            raise ValueError("graph has no node attributes (x); use features: labels or degree")
        x = np.asarray(graph.x, dtype=np.float32).reshape(n, -1)
        if x.shape[1] != dim:
            raise ValueError(f"graph has {x.shape[1]} node features, the tokenizer's dim is {dim}")
        return x
    if kind == "labels":
        if graph.node_labels is None:
            raise ValueError("graph has no node labels; use features: attributes or degree")
        index = np.asarray(graph.node_labels).reshape(n).astype(np.int64)
        if index.min() < 0 or index.max() >= dim:
            raise ValueError(
                f"node labels span [{index.min()}, {index.max()}], outside the one-hot width dim={dim} "
                "(omnimask inspect --stats gives the dataset's range)"
            )
    else:
        index = np.minimum(np.bincount(graph.edge_index[1], minlength=n), dim - 1)
    x = np.zeros((n, dim), dtype=np.float32)
    x[np.arange(n), index] = 1.0
    return x


@register("tokenizer", "graph_features")
class GraphFeatureTokenizer(Tokenizer):
    """Graph -> one token per node, features ``[N, dim]`` (float32), with ``edges [2, E]`` (int64).

    ``features`` picks the node features (see :func:`node_features`); graphs without
    attributes get one-hot node labels or one-hot degrees, as GraphMAE's TU loaders.
    """

    @dataclass
    class Config:
        dim: int
        """Node feature width: the attributes' width, or the one-hot width (labels, degrees)."""
        features: Literal["auto", "attributes", "labels", "degree"] = "auto"
        max_nodes: int = 100_000
        """Graphs with more nodes fail to load (and are replaced, logged)."""

        def __post_init__(self) -> None:
            if self.dim < 1 or self.max_nodes < 1:
                raise ValueError("dim and max_nodes must be >= 1")

    variable_length = True
    gives_edges = True

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.layout = TokenLayout(grid=(cfg.max_nodes,), token_dim=cfg.dim)

    def __call__(self, graph: Graph) -> Tokens:
        if graph.num_nodes > self.cfg.max_nodes:
            raise ValueError(f"graph has {graph.num_nodes} nodes, more than max_nodes={self.cfg.max_nodes}")
        x = node_features(graph, self.cfg.features, self.cfg.dim)
        return Tokens(torch.from_numpy(x), edges=torch.from_numpy(np.ascontiguousarray(graph.edge_index, dtype=np.int64)))
