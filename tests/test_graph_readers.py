"""Graph readers on hand-made files: npz, node-link JSON, GraphML, GML, a TU-format folder, and the
quarantine reasons of invalid graphs."""

import io
import json

import networkx as nx
import numpy as np
import pytest

from omnimask.core.interfaces import QuarantineError
from omnimask.modalities.graph.readers import is_tu_folder, read_networkx_file, read_npz, read_tu_folder


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_npz_graph_and_validation():
    g = read_npz(npz_bytes(x=np.ones((3, 2), np.float32), edge_index=np.array([[0, 1], [1, 2]]), y=np.array([1]))).validate()
    assert g.num_nodes == 3 and g.edge_index.dtype == np.int64 and g.y.tolist() == [1]
    with pytest.raises(QuarantineError, match=r"edge index out of range \[0, 3\)"):
        read_npz(npz_bytes(x=np.ones((3, 2)), edge_index=np.array([[0, 1], [1, 5]]))).validate()
    with pytest.raises(QuarantineError, match="NaN or infinite values in x"):
        read_npz(npz_bytes(x=np.array([[np.nan], [0.0]]), edge_index=np.array([[0], [1]]))).validate()
    with pytest.raises(QuarantineError, match=r"edge_index must be \[2, E\]"):
        read_npz(npz_bytes(x=np.ones((3, 2)), edge_index=np.array([0, 1, 2]))).validate()
    with pytest.raises(QuarantineError, match="needs an edge_index"):
        read_npz(npz_bytes(x=np.ones((3, 2))))
    with pytest.raises(ValueError):  # object arrays would need pickle: refused
        read_npz(npz_bytes(edge_index=np.array([[0], [1]]), x=np.array([{"a": 1}], dtype=object)))


def test_networkx_formats(tmp_path):
    g = nx.cycle_graph(5)
    for v in g.nodes:
        g.nodes[v]["node_label"] = v % 2
    (tmp_path / "g.json").write_text(json.dumps(nx.node_link_data(g, edges="links")))
    nx.write_graphml(g, tmp_path / "g.graphml")
    nx.write_gml(g, tmp_path / "g.gml")
    for name in ("g.json", "g.graphml", "g.gml"):
        graph = read_networkx_file(tmp_path / name, name.split(".")[1]).validate()
        assert graph.num_nodes == 5 and graph.edge_index.shape == (2, 10)  # undirected: both directions
        assert graph.node_labels.tolist() == [0, 1, 0, 1, 0]


def test_tu_folder(tmp_path):
    # two graphs: a triangle (nodes 1-3) and an edge (nodes 4-5), 1-based ids as TU files have them
    (tmp_path / "DS_A.txt").write_text("1, 2\n2, 1\n2, 3\n3, 2\n3, 1\n1, 3\n4, 5\n5, 4\n")
    (tmp_path / "DS_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n")
    (tmp_path / "DS_graph_labels.txt").write_text("1\n-1\n")
    (tmp_path / "DS_node_labels.txt").write_text("0\n1\n2\n0\n0\n")
    assert is_tu_folder(tmp_path)
    graphs = dict(read_tu_folder(tmp_path))
    assert list(graphs) == ["DS#1", "DS#2"]
    tri, edge = graphs["DS#1"].validate(), graphs["DS#2"].validate()
    assert tri.num_nodes == 3 and tri.edge_index.shape == (2, 6) and tri.y.tolist() == [1]
    assert tri.node_labels.tolist() == [0, 1, 2]
    assert edge.num_nodes == 2 and sorted(map(tuple, edge.edge_index.T.tolist())) == [(0, 1), (1, 0)]
    assert edge.y.tolist() == [-1]


def test_node_link_json_with_edges_or_links_reads_the_same(tmp_path):
    """networkx >= 3.6 writes the edge list as "edges" by default, older versions as "links": both read."""
    g = nx.Graph()
    g.add_edges_from([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)])
    for v in g.nodes:
        g.nodes[v]["x"] = [float(v), 1.0]
    g.graph["y"] = 1
    (tmp_path / "default.json").write_text(json.dumps(nx.node_link_data(g, edges="edges")))  # networkx >= 3.6's default
    (tmp_path / "links.json").write_text(json.dumps(nx.node_link_data(g, edges="links")))
    new, old = (read_networkx_file(tmp_path / name, "json").validate() for name in ("default.json", "links.json"))
    assert new.num_nodes == old.num_nodes == 4 and new.edge_index.shape == (2, 10)
    for name in ("edge_index", "x", "y"):
        assert np.array_equal(getattr(new, name), getattr(old, name)), name


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"nodes": [{"id": 0}, {"id": 1}], "edges": [], "links": [{"source": 0, "target": 1}]}, "both an 'edges' and a 'links'"),
        ({"nodes": [{"id": 0}]}, r"needs a 'nodes' and an 'edges' \(or 'links'\) list; it has keys \['nodes'\]"),
        ({"edges": []}, r"needs a 'nodes' and an 'edges'"),
        ([1, 2], "must be an object"),
    ],
)
def test_node_link_json_without_one_edge_list_is_quarantined(tmp_path, data, reason):
    (tmp_path / "g.json").write_text(json.dumps(data))
    with pytest.raises(QuarantineError, match=reason):
        read_networkx_file(tmp_path / "g.json", "json")


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda d: (d / "DS_A.txt").write_text("1, 2\n2, 9\n"), "DS_A.txt names node 9, outside the 3 nodes"),
        (lambda d: (d / "DS_A.txt").write_text("1, 2\n2\n"), "unparsable DS_A.txt"),
        (lambda d: (d / "DS_A.txt").write_text("1, 2, 3\n"), "must hold two node ids a line"),
        (lambda d: (d / "DS_graph_indicator.txt").write_text("2\n1\n1\n"), "not sorted by graph id"),
        (lambda d: (d / "DS_graph_indicator.txt").write_bytes(b"\xff\n1\n1\n"), "unparsable DS_graph_indicator.txt"),
    ],
)
def test_a_broken_tu_folder_is_quarantined_with_what_is_wrong(tmp_path, edit, reason):
    """What the fuzzer's mutants of a TU folder turned up as bare numpy errors (an IndexError, a UnicodeDecodeError)."""
    d = tmp_path / "DS"
    d.mkdir()
    (d / "DS_A.txt").write_text("1, 2\n2, 3\n")
    (d / "DS_graph_indicator.txt").write_text("1\n1\n1\n")
    edit(d)
    with pytest.raises(QuarantineError, match=reason):
        list(read_tu_folder(d))
