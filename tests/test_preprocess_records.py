"""Preprocessing the graph, point-cloud and protein modalities: inputs that hold many records (FASTA
files, TU folders) next to one-record files, every record accounted for, shards rolling over, duplicates
reported; samples read back and decoded as the loader does."""

import gzip
import io
import json
from pathlib import Path

import networkx as nx
import numpy as np
from peak_rss import peak_rss_growth

from omnimask.data.preprocess import preprocess
from omnimask.data.units import MAX_BAD_RECORDS, write_unit
from omnimask.io.formats import iter_shard
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.graph.decode import GraphDecoder
from omnimask.modalities.pointcloud.decode import PointCloudAugmentConfig, PointCloudDecoder
from omnimask.modalities.protein.decode import ProteinAugmentConfig, ProteinDecoder


def samples(out: Path, manifest) -> dict[str, tuple[dict, dict]]:
    found = {}
    for shard in manifest.shards:
        for key, members in iter_shard(manifest.format, out / shard.path):
            meta = json.loads(members["json"])
            assert meta["key"] == key and "." not in key
            found[meta["source"]] = (meta, members)
    return found


def test_protein_records_quarantine_duplicates_and_shard_rollover(ray_local, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.fasta").write_text(
        ">p1 first protein\nMKTAYIAKQR\nQISFVKSHFS\n>empty\n>p3 bad\nMKJ1\n>p4 soft\nmktayiak\n>p5 copy of p1\nMKTAYIAKQRQISFVKSHFS\n"
    )
    with gzip.open(raw / "b.fa.gz", "wt") as f:
        f.write("".join(f">g{i}\n{'ACDEFGHIKLMNPQRSTVWY'[i:] + 'M' * i}\n" for i in range(5)))
    (raw / "broken.fa.gz").write_bytes(gzip.compress(b">x\nMKT\n")[:-12])  # truncated gzip stream
    (raw / "image.fasta").write_bytes(bytes(range(256)))
    m = preprocess("protein", raw, tmp_path / "out", samples_per_shard=2)
    out = tmp_path / "out"
    # each record is an input; a file that cannot be read is one input with its reason
    reasons = {q["source"]: q["reason"] for q in read_quarantine(out)}
    assert set(reasons) == {"a.fasta#2:empty", "a.fasta#3:p3", "broken.fa.gz", "image.fasta"}
    assert reasons["a.fasta#2:empty"] == "empty sequence"
    assert "outside the protein alphabet: '1J'" in reasons["a.fasta#3:p3"]
    assert reasons["broken.fa.gz"].startswith("unreadable: Compressed file ended")
    assert reasons["image.fasta"].startswith("binary data or UTF-16") and "not an ASCII FASTA file" in reasons["image.fasta"]
    got = samples(out, m)
    assert set(got) == {"a.fasta#1:p1", "a.fasta#4:p4", "a.fasta#5:p5", *(f"b.fa.gz#{i + 1}:g{i}" for i in range(5))}
    assert m.num_samples == 8 and m.num_inputs == m.num_samples + m.num_quarantined == 8 + len(reasons)
    meta, members = got["a.fasta#4:p4"]
    assert members["seq"] == b"MKTAYIAK" and meta["id"] == "p4" and meta["description"] == "soft" and meta["length"] == 8
    # a FASTA file is a unit of its own and rolls over every samples_per_shard samples
    names = sorted(s.path for s in m.shards)
    assert names == ["shard-000000-0001.tar", "shard-000000.tar", "shard-000001-0001.tar", "shard-000001-0002.tar", "shard-000001.tar"]
    assert all(s.num_samples <= 2 for s in m.shards)
    dups = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert dups == [{"source": "a.fasta#5:p5", "same_as": "a.fasta#1:p1"}] and m.preprocess["duplicates"] == 1
    crop = ProteinDecoder(ProteinAugmentConfig(max_residues=6))
    window = crop(got["a.fasta#1:p1"][1], 3)
    assert len(window) == 6 and window in "MKTAYIAKQRQISFVKSHFS" and window == crop(got["a.fasta#1:p1"][1], 3)


def test_pointcloud_files_and_meshes(ray_local, tmp_path):
    raw = tmp_path / "raw"
    (raw / "clouds").mkdir(parents=True)
    (raw / "meshes").mkdir()
    g = np.random.default_rng(0)
    np.save(raw / "clouds" / "a.npy", g.normal(size=(2000, 3)).astype(np.float32))
    np.savetxt(raw / "clouds" / "b.xyz", g.normal(size=(500, 3)))
    np.savetxt(raw / "clouds" / "c.txt", np.c_[g.normal(size=(300, 3)), np.zeros((300, 3))], delimiter=",")
    hdr = "ply\nformat binary_little_endian 1.0\nelement vertex 400\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    (raw / "clouds" / "d.ply").write_bytes(hdr.encode() + g.normal(size=(400, 3)).astype("<f4").tobytes())
    (raw / "meshes" / "cube.off").write_text(
        "OFF\n8 6 0\n"
        + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))
        + "4 0 1 3 2\n4 4 5 7 6\n4 0 1 5 4\n4 2 3 7 6\n4 0 2 6 4\n4 1 3 7 5\n"
    )
    (raw / "meshes" / "tri.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (raw / "bad").mkdir()
    np.save(raw / "bad" / "nan.npy", np.full((100, 3), np.nan, np.float32))
    np.save(raw / "bad" / "few.npy", np.zeros((5, 3), np.float32))
    (raw / "bad" / "empty.ply").write_bytes(b"")
    m = preprocess("pointcloud", raw, tmp_path / "out", samples_per_shard=4, options={"mesh_points": 2048})
    assert (m.num_inputs, m.num_samples, m.num_quarantined) == (9, 6, 3)
    reasons = {q["source"]: q["reason"] for q in read_quarantine(tmp_path / "out")}
    assert reasons == {
        "bad/nan.npy": "NaN or infinite coordinates",
        "bad/few.npy": "only 5 points (min_points=32)",
        "bad/empty.ply": "empty file",
    }
    got = samples(tmp_path / "out", m)
    assert got["meshes/cube.off"][0]["points"] == 2048 and got["clouds/c.txt"][0]["channels"] == 6
    cube = np.load(io.BytesIO(got["meshes/cube.off"][1]["npy"]))
    assert cube.min() >= 0 and cube.max() <= 1 and np.isclose(np.minimum(cube, 1 - cube).min(axis=1), 0, atol=1e-6).all()
    dec = PointCloudDecoder(PointCloudAugmentConfig(scale=(1.0, 1.0), translate=0.0))
    pts = dec(got["clouds/b.xyz"][1], 0)
    assert pts.shape == (1024, 3) and np.isclose(np.linalg.norm(pts, axis=1).max(), 1.0, atol=1e-5)  # repeats: 500 < 1024
    assert np.array_equal(pts, dec(got["clouds/b.xyz"][1], 0))


def test_graph_files_and_a_tu_folder(ray_local, tmp_path):
    raw = tmp_path / "raw"
    (raw / "files").mkdir(parents=True)
    np.savez(raw / "files" / "g.npz", x=np.ones((3, 4), np.float32), edge_index=np.array([[0, 1, 2], [1, 2, 0]]))
    kite = nx.krackhardt_kite_graph()
    (raw / "files" / "kite.json").write_text(json.dumps(nx.node_link_data(kite, edges="links")))
    nx.write_graphml(nx.path_graph(4), raw / "files" / "path.graphml")
    nx.write_gml(nx.star_graph(3), raw / "files" / "star.gml")
    np.savez(raw / "files" / "bad_index.npz", x=np.ones((2, 1)), edge_index=np.array([[0], [9]]))
    (raw / "files" / "notes.txt").write_text("hello\n")
    tu = raw / "tu" / "MINI"
    tu.mkdir(parents=True)
    (tu / "MINI_A.txt").write_text("1, 2\n2, 1\n3, 4\n4, 3\n4, 5\n5, 4\n")
    (tu / "MINI_graph_indicator.txt").write_text("1\n1\n2\n2\n2\n3\n")
    (tu / "MINI_graph_labels.txt").write_text("0\n1\n1\n")
    (tu / "MINI_node_attributes.txt").write_text("0.5\n1.5\n2.0\n3.0\nnan\n1.0\n")
    m = preprocess("graph", raw, tmp_path / "out", samples_per_shard=4)
    reasons = {q["source"]: q["reason"] for q in read_quarantine(tmp_path / "out")}
    assert set(reasons) == {"files/bad_index.npz", "files/notes.txt", "tu/MINI#2"}
    assert "edge index out of range" in reasons["files/bad_index.npz"]
    assert "unsupported graph format .txt" in reasons["files/notes.txt"]
    assert reasons["tu/MINI#2"] == "NaN or infinite values in x"
    got = samples(tmp_path / "out", m)
    assert set(got) == {"files/g.npz", "files/kite.json", "files/path.graphml", "files/star.gml", "tu/MINI#1", "tu/MINI#3"}
    assert (m.num_inputs, m.num_samples, m.num_quarantined) == (9, 6, 3)
    g = GraphDecoder()(got["files/kite.json"][1], 0)
    assert g.num_nodes == 10 and g.edge_index.shape == (2, 36)
    one = GraphDecoder()(got["tu/MINI#3"][1], 0)
    assert one.num_nodes == 1 and one.edge_index.shape == (2, 0) and one.y.tolist() == [1] and one.x.tolist() == [[1.0]]
    assert got["tu/MINI#1"][0]["label"] == "tu" and got["tu/MINI#1"][0]["y"] == [0]


def test_a_file_of_millions_of_bad_records_is_cut_off_after_max_bad_records(tmp_path):
    """3.9 KB of gzip holding 2M empty FASTA records: a reason for each would take ~0.8 GB in the task (and as
    much again in the driver). After MAX_BAD_RECORDS the rest of the file is one quarantine entry."""
    bomb = tmp_path / "many.fa.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        for _ in range(20):
            f.write(b">\n" * 100_000)
        f.write(b">good\nMKV\n")
    assert bomb.stat().st_size < 10_000
    unit = {"index": 0, "first": 0, "inputs": [{"path": str(bomb), "source": "many.fa.gz", "label": None}]}
    report = write_unit(unit, "protein", "webdataset", {}, tmp_path, [], 256)
    assert report["num_inputs"] == MAX_BAD_RECORDS + 1 == len(report["quarantine"]) and not report["shards"]
    last = report["quarantine"][-1]
    assert last["source"] == f"many.fa.gz (after {MAX_BAD_RECORDS} records)" and "the rest of the file" in last["reason"]
    (tmp_path / "again").mkdir()
    growth = peak_rss_growth(
        setup="from pathlib import Path\nfrom omnimask.data.units import write_unit",
        body=f"""
        write_unit({unit!r}, "protein", "webdataset", {{}}, Path({str(tmp_path / "again")!r}), [], 256)
    """,
    )
    assert growth < 64e6, growth / 1e6
