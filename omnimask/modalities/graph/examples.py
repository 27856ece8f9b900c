"""Demo and test graphs: networkx's generators and Zachary's karate club as per-graph files (NPZ,
node-link JSON, GraphML, GML) and a TU-format dataset folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np


def demo_graph(i: int, g: np.random.Generator) -> Any:
    """The ``i``-th demo graph: a family by ``i`` (trees, cycles, grids, ladders, wheels, small-world,
    preferential attachment, the karate club), sized at random."""
    kind = i % 8
    if kind == 0:
        return nx.karate_club_graph()
    n = int(g.integers(6, 40))
    seed = int(g.integers(0, 2**31))
    if kind == 1:
        return nx.random_labeled_tree(n, seed=seed)
    if kind == 2:
        return nx.cycle_graph(n)
    if kind == 3:
        return nx.grid_2d_graph(int(g.integers(2, 6)), int(g.integers(2, 8)))
    if kind == 4:
        return nx.ladder_graph(max(2, n // 2))
    if kind == 5:
        return nx.wheel_graph(n)
    if kind == 6:
        return nx.connected_watts_strogatz_graph(n, 4, 0.2, seed=seed)
    return nx.barabasi_albert_graph(n, 2, seed=seed)


def plain(graph: Any) -> Any:
    """The graph with integer node names and no attributes (so every format can hold it)."""
    out = nx.convert_node_labels_to_integers(nx.Graph(graph.edges))
    out.add_nodes_from(range(graph.number_of_nodes()))
    return out


def write_tu_folder(folder: Path, graphs: list[Any]) -> None:
    """``graphs`` as a TU-format dataset (1-based node ids over the dataset, both edge directions,
    graph labels by family, node labels by degree bucket)."""
    folder.mkdir(parents=True, exist_ok=True)
    edges, indicator, node_labels, graph_labels, offset = [], [], [], [], 0
    for gid, graph in enumerate(graphs, start=1):
        for u, v in graph.edges:
            edges += [(u + offset + 1, v + offset + 1), (v + offset + 1, u + offset + 1)]
        indicator += [gid] * graph.number_of_nodes()
        node_labels += [min(d, 4) for _, d in sorted(graph.degree)]
        graph_labels.append(gid % 2)
        offset += graph.number_of_nodes()
    name = folder.name
    (folder / f"{name}_A.txt").write_text("".join(f"{u}, {v}\n" for u, v in edges))
    (folder / f"{name}_graph_indicator.txt").write_text("".join(f"{i}\n" for i in indicator))
    (folder / f"{name}_node_labels.txt").write_text("".join(f"{i}\n" for i in node_labels))
    (folder / f"{name}_graph_labels.txt").write_text("".join(f"{i}\n" for i in graph_labels))


def build_demo_graphs(root: Path, count: int, seed: int = 0) -> int:
    """``count`` good graphs: three quarters as files in the four formats, a quarter in the TU folder
    ``tu/DEMO``; plus three broken inputs (an edge index out of range, NaN features, an unknown
    format). Returns the number of inputs (graphs), broken ones included."""
    g = np.random.default_rng(seed)
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    in_tu = count // 4
    for i in range(count - in_tu):
        graph = plain(demo_graph(i, g))
        fmt = i % 4
        if fmt == 0:
            edges = np.array(list(graph.edges), dtype=np.int64).reshape(-1, 2).T
            np.savez(
                files / f"g{i:04d}.npz",
                edge_index=np.concatenate([edges, edges[::-1]], axis=1),
                num_nodes=np.array(graph.number_of_nodes()),
            )
        elif fmt == 1:
            (files / f"g{i:04d}.json").write_text(json.dumps(nx.node_link_data(graph, edges="links")))
        elif fmt == 2:
            nx.write_graphml(graph, files / f"g{i:04d}.graphml")
        else:
            nx.write_gml(graph, files / f"g{i:04d}.gml")
    write_tu_folder(root / "tu" / "DEMO", [plain(demo_graph(i, g)) for i in range(in_tu)])
    broken = root / "broken"
    broken.mkdir(exist_ok=True)
    np.savez(broken / "bad_index.npz", edge_index=np.array([[0, 1], [1, 7]]), num_nodes=np.array(3))
    np.savez(broken / "nan_features.npz", x=np.full((2, 3), np.nan, np.float32), edge_index=np.array([[0], [1]]))
    (broken / "notes.txt").write_text("not a graph\n")
    return count + 3
