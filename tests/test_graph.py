"""GraphMAE: node features, node and edge masking, PyG-layout batches, re-mask and the SCE loss, and
graphs of every format preprocessed and pretrained through the CLI."""

import dataclasses
import io

import numpy as np
import pytest
import torch

from conftest import preprocessed, pretrain_briefly, run_cli
from omnimask.core.collate import recipe_collate
from omnimask.core.config import ConfigError, load_recipe
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import MaskIndex
from omnimask.core.recipe import Recipe
from omnimask.data.loader import SamplePipeline
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.graph.decode import GraphDecoder
from omnimask.modalities.graph.examples import build_demo_graphs
from omnimask.modalities.graph.maskers import EdgeMasker, GraphMAEMasker
from omnimask.modalities.graph.model import scaled_cosine_error
from omnimask.modalities.graph.readers import Graph
from omnimask.modalities.graph.tokenizer import node_features


def ring(n: int) -> np.ndarray:
    """Edges of an undirected ring, both directions: ``[2, 2n]``."""
    e = np.stack([np.arange(n), (np.arange(n) + 1) % n])
    return np.concatenate([e, e[::-1]], axis=1)


def npz(edge_index, **arrays) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.savez(buf, edge_index=edge_index, **arrays)
    return {"npz": buf.getvalue(), "json": b"{}"}


def test_node_features_attributes_labels_and_degrees():
    star = Graph(np.array([[0, 0, 0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 0, 0, 0, 0]]), 5, node_labels=np.array([2, 0, 0, 1, 0]))
    deg = node_features(star, "degree", 3)  # degrees 4,1,1,1,1; 4 is clipped to the last column
    assert deg.tolist() == [[0, 0, 1]] + [[0, 1, 0]] * 4
    assert node_features(star, "auto", 3).argmax(1).tolist() == [2, 0, 0, 1, 0]  # labels before degrees
    with pytest.raises(ValueError, match="outside the one-hot width dim=2"):
        node_features(star, "labels", 2)
    star.x = np.arange(10, dtype=np.float32).reshape(5, 2)
    assert np.array_equal(node_features(star, "auto", 2), star.x)
    with pytest.raises(ValueError, match="2 node features, the tokenizer's dim is 3"):
        node_features(star, "attributes", 3)


def test_graphmae_masks_int_ratio_nodes_and_replaces_a_replace_rate_share():
    masker = GraphMAEMasker(GraphMAEMasker.Config(ratio=0.5, replace_rate=0.25, count="graph"))
    layout = TokenLayout((40,), 8)
    tokens = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    for seed in range(10):
        mask = torch.as_tensor(masker(layout, seed))
        assert int(mask.sum()) == 20 and np.array_equal(mask.numpy(), masker(layout, seed))
        out, mask_token = masker.corrupt(tokens, mask, seed)
        assert torch.equal(out[~mask], tokens[~mask]) and not mask_token[~mask].any()
        assert int(mask_token.sum()) == 15 and (out[mask_token] == 0).all()  # zeroed, for the [MASK] vector
        noise = mask & ~mask_token
        assert int(noise.sum()) == 5  # int(0.25 * 20)
        for row in out[noise]:  # each shows the features of a node of the same graph
            assert (tokens == row).all(dim=1).any()
        again = masker.corrupt(tokens, mask, seed)
        assert torch.equal(again[0], out) and torch.equal(again[1], mask_token)
    assert len({tuple(np.flatnonzero(masker(layout, s))) for s in range(10)}) == 10
    assert masker.num_masked(TokenLayout((1,), 8)) == 1  # a one-node graph still has a node to predict


def test_graphmae_keeps_the_replace_rate_on_small_graphs():
    """GraphMAE counts the replaced nodes over the whole batch; per graph, a small graph's count is rounded
    up with the fraction's probability, so the rate holds on average (int() would replace none here)."""
    masker = GraphMAEMasker(GraphMAEMasker.Config(ratio=0.5, replace_rate=0.1, count="graph"))
    layout = TokenLayout((12,), 4)
    tokens = torch.arange(48, dtype=torch.float32).reshape(12, 4)  # distinct rows
    counts = []
    for seed in range(400):
        mask = torch.as_tensor(masker(layout, seed))
        out, mask_token = masker.corrupt(tokens, mask, seed)
        counts.append(int((mask & ~mask_token).sum()))
        assert torch.equal(masker.corrupt(tokens, mask, seed)[0], out)  # seeded
    assert set(counts) == {0, 1}  # 6 hidden x 0.1 = 0.6: never more than the integer part + 1
    assert abs(np.mean(counts) - 0.6) < 0.1  # 400 draws: standard error ~0.025


def test_graphmae_masks_a_batch_as_one_graph_by_default():
    """GraphMAE's ``encoding_mask_noise`` on the batched graph: ``int(0.5 T)`` of the batch's ``T`` nodes,
    ``int(r H)`` of them showing nodes drawn from the whole batch, ``int((1 - r) H)`` zeroed for [MASK];
    the draws come from the samples' seeds, so the same samples give the same batch."""
    recipe = Recipe.from_config(load_recipe("graphmae_tiny", ["model.masker.replace_rate=0.15"]))
    assert recipe.masker.batch_level
    samples, batch = graph_batch(recipe, [7, 12, 4, 9])
    t = 7 + 12 + 4 + 9
    flat_true = torch.cat([s["tokens"] for s in samples])  # the samples come unmasked
    assert all("mask" not in s and "target" not in s for s in samples)
    mask, flags, seen = batch["mask"][batch["valid"]], batch["mask_token"][batch["valid"]], batch["tokens"][batch["valid"]]
    hidden = int(0.5 * t)
    assert int(mask.sum()) == hidden and not batch["mask"][~batch["valid"]].any()
    assert torch.equal(batch["target"], flat_true[mask])
    assert int(flags.sum()) == int(0.85 * hidden) and not flags[~mask].any() and (seen[flags] == 0).all()
    assert torch.equal(seen[~mask], flat_true[~mask])
    # on features that tell every node apart (degree one-hots repeat), the replaced nodes can be counted
    distinct = torch.randn(t, 5, generator=torch.Generator().manual_seed(0))
    dmask, dseen, dflags = recipe.masker.mask_batch(distinct, seed=11)
    replaced = dmask & ~dflags & ~(dseen == distinct).all(dim=1)
    assert int(dflags.sum()) == int(0.85 * hidden) and int(replaced.sum()) == int(0.15 * hidden)
    for row in dseen[replaced]:  # another node's features, from any graph of the batch
        assert (distinct == row).all(dim=1).any()
    _, again = graph_batch(recipe, [7, 12, 4, 9])
    assert torch.equal(again["mask"], batch["mask"]) and torch.equal(again["tokens"], batch["tokens"])
    _, other = graph_batch(recipe, [7, 12, 4, 9], seed=1)
    assert not torch.equal(other["mask"], batch["mask"])
    counts = {int(graph_batch(recipe, [7, 12, 4, 9], seed=s)[1]["mask"][0].sum()) for s in range(8)}
    assert len(counts) > 1  # a graph's share depends on the draw over the whole batch


def test_edge_masker_hides_undirected_pairs_together():
    masker = EdgeMasker(EdgeMasker.Config(ratio=0.7))
    edges = torch.from_numpy(ring(20))  # 20 pairs, both directions
    hidden = masker.hide_edges(edges, 20, seed=3)
    assert hidden.shape == (40,) and int(hidden.sum()) == 2 * 14
    assert torch.equal(hidden[:20], hidden[20:])  # (u, v) and (v, u) together
    assert torch.equal(hidden, masker.hide_edges(edges, 20, seed=3))
    assert not torch.equal(hidden, masker.hide_edges(edges, 20, seed=4))
    directed = EdgeMasker(EdgeMasker.Config(ratio=0.5, undirected=False)).hide_edges(edges, 20, seed=3)
    assert int(directed.sum()) == 20 and not torch.equal(directed[:20], directed[20:])


def shard_members(root, manifest):
    from omnimask.io.formats import iter_shard

    for shard in manifest.shards:
        for _, members in iter_shard(manifest.format, root / shard.path):
            yield members


def graph_batch(recipe, sizes, seed=0):
    pipeline = SamplePipeline(recipe, seed)
    samples = [pipeline(f"g{i}", npz(ring(n), num_nodes=np.array(n)), 0) for i, n in enumerate(sizes)]
    return samples, recipe_collate(recipe)(samples)


def test_batches_have_pyg_layout():
    from torch_geometric.data import Batch, Data

    recipe = Recipe.from_config(load_recipe("graphmae_tiny", ["model.edge_masker={name: edge_random}", "model.masker.count=graph"]))
    samples, batch = graph_batch(recipe, [5, 9, 3])
    reference = Batch.from_data_list([Data(x=s["tokens"], edge_index=s["edges"]) for s in samples])
    assert torch.equal(batch["edges"], reference.edge_index)
    assert torch.equal(batch["tokens"][batch["valid"]], reference.x)
    assert batch["tokens"].shape == (3, 9, 16) and batch["edge_hidden"].shape == (reference.num_edges,)
    assert batch["target"].shape == (int(batch["mask"].sum()), 16) and not batch["mask"][~batch["valid"]].any()


def test_remask_zeroes_hidden_rows_before_the_decoder_and_sce_on_known_vectors():
    recipe = Recipe.from_config(load_recipe("graphmae_tiny"))
    model = recipe.build_model()
    _, batch = graph_batch(recipe, [6, 11])
    seen = {}
    model.head.decoder.register_forward_pre_hook(lambda mod, args: seen.update(h=args[0]))
    pred = model(batch["tokens"], MaskIndex.from_batch(batch))
    hidden = batch["mask"][batch["valid"]]
    assert pred.shape == (int(hidden.sum()), 16)
    assert (seen["h"][hidden] == 0).all() and (seen["h"][~hidden].abs().sum(1) > 0).all()
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    t = torch.tensor([[3.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])  # cosines 1, 0, -1
    assert torch.isclose(scaled_cosine_error(p, t, 1.0), torch.tensor(1.0))
    assert torch.isclose(scaled_cosine_error(p, t, 2.0), torch.tensor(5 / 3))
    assert torch.isclose(scaled_cosine_error(p, t, 3.0), torch.tensor(3.0))


@pytest.mark.parametrize("kind", ["gat", "gin"])
def test_a_graph_is_encoded_the_same_alone_and_in_a_batch(kind):
    # each graph masked alone: with GraphMAE's batch-level masking its mask depends on the batch
    recipe = Recipe.from_config(
        load_recipe("graphmae_tiny", [f"model.encoder.kind={kind}", f"model.head.kind={kind}", "model.masker.count=graph"])
    )
    model = recipe.build_model().eval()
    _, both = graph_batch(recipe, [7, 12])
    _, alone = graph_batch(recipe, [7])
    with torch.no_grad():
        a = model.encoder(both["tokens"], MaskIndex.from_batch(both))[:7]
        b = model.encoder(alone["tokens"], MaskIndex.from_batch(alone))
    assert torch.allclose(a, b, atol=1e-5)


def test_gat_layers_see_the_self_loops_graphmaes_loader_gives_them_and_the_encoder_the_edges_not_hidden():
    """GAT layers get their self-loops once per stack, from the host's ``loop_free`` check where the graph
    has none: the same outputs as GraphMAE's GAT encoder on the graph its loader makes
    (``remove_self_loop().add_self_loop()``), with a self-loop in the data or without. The collate selects the
    encoder's edges (``edges`` minus ``edge_hidden``) on the host."""
    from benchmarks.reference_graphmae import Graph, ReferenceGraphMAE

    recipe = Recipe.from_config(
        load_recipe("graphmae_tiny", ["model.encoder.kind=gat", "model.head.kind=gat", "model.edge_masker={name: edge_random}"])
    )
    model = recipe.build_model().eval()
    _, batch = graph_batch(recipe, [5, 9, 3])
    assert batch["loop_free"] and torch.equal(batch["encoder_edges"], batch["edges"][:, ~batch["edge_hidden"]])
    assert 0 < batch["encoder_edges"].shape[1] < batch["edges"].shape[1]
    reference = ReferenceGraphMAE.from_model(recipe, model).eval()
    nodes = batch["tokens"][batch["valid"]]
    looped = torch.cat([batch["edges"], torch.tensor([[2, 7], [2, 7]])], dim=1)  # two self-loops in the data
    with torch.no_grad():
        for edges, loop_free in ((batch["edges"], True), (looped, False)):
            graph = Graph(edges[0], edges[1], (len(nodes),)).remove_self_loop().add_self_loop()
            assert torch.allclose(model.encoder.gnn(nodes, edges, loop_free), reference.encoder(graph, nodes), atol=1e-6)
        index = MaskIndex.from_batch(batch)
        # without the collate's selection the index makes it; a changed edge set changes the output
        unselected = MaskIndex.from_batch({k: v for k, v in batch.items() if k != "encoder_edges"})
        assert torch.equal(unselected.encoder_edges, index.encoder_edges)
        latent = model.encoder(batch["tokens"], index)
        assert torch.equal(latent, model.encoder(batch["tokens"], unselected))
        every_edge = dataclasses.replace(index, encoder_edges=batch["edges"])
        assert not torch.allclose(latent, model.encoder(batch["tokens"], every_edge))


def test_edge_masker_must_mask_edges_of_a_graph():
    with pytest.raises(ConfigError, match="model.masker.name: 'edge_random' masks edges"):
        Recipe.from_config(load_recipe("graphmae_tiny", ["model.masker={name: edge_random}"]))
    with pytest.raises(ConfigError, match="model.edge_masker: ESMTokenizer gives no edges"):
        Recipe.from_config(load_recipe("esm_mlm_tiny", ["model.edge_masker={name: edge_random}"]))


@pytest.fixture(scope="module")
def graph_dataset(tmp_path_factory):
    return preprocessed(tmp_path_factory, "graph", lambda raw: build_demo_graphs(raw, 96, seed=5), samples_per_shard=16)


def test_graph_files_are_accounted_for_and_graphmae_tiny_pretrains_through_the_cli(graph_dataset, tmp_path):
    root, inputs, manifest = graph_dataset
    assert manifest.num_inputs == inputs == 99 and manifest.num_samples == 96 and manifest.num_quarantined == 3
    reasons = {q["source"]: q["reason"] for q in read_quarantine(root / "shards")}
    assert "edge index out of range" in reasons["broken/bad_index.npz"]
    assert reasons["broken/nan_features.npz"] == "NaN or infinite values in x"
    assert "unsupported graph format .txt" in reasons["broken/notes.txt"]
    pretrain_briefly("graphmae_tiny", root / "shards", tmp_path, batch_size=16, steps=40, picture=False)


def test_inspect_stats_suggests_the_node_features(graph_dataset, tmp_path):
    root, _, manifest = graph_dataset
    degrees = [
        int(np.bincount(g.edge_index[1]).max())
        for g in (GraphDecoder()(m, 0) for m in shard_members(root / "shards", manifest))
        if g.edge_index.size
    ]
    out = run_cli(["inspect", str(root / "shards"), "--stats"], tmp_path).stdout
    assert "96 graphs" in out and f"max degree {max(degrees)}" in out
    # only the TU folder's graphs have node labels: one-hot degrees it is
    assert f"use: model.tokenizer.features=degree model.tokenizer.dim={max(degrees) + 1}" in out


def test_ray_data_rows_of_different_shapes_batch_like_the_torch_loader(graph_dataset, ray_local, tmp_path):
    """data.loader=ray: nodes and edges of different sizes travel as Ray's variable-shaped tensors and are
    batched by the same collate as the torch loader's (two-rank DDP over Ray Data: tests/test_train_ray.py)."""
    from omnimask.data.ray_ingest import RayShardBatches, build_ray_dataset

    root, _, _ = graph_dataset
    cfg = load_recipe(
        "graphmae_tiny",
        [
            f"data.path={root / 'shards'}",
            "data.loader=ray",
            "data.batch_size=8",
            "trainer.max_steps=2",
            "model.edge_masker={name: edge_random}",
        ],
    )
    recipe = Recipe.from_config(cfg)
    batches = RayShardBatches(build_ray_dataset(cfg, world_size=1).iterator(), 8, collate_fn=recipe_collate(recipe))
    # the whole (bounded: max_steps batches) stream, not its first batch alone: an abandoned Ray Data iterator keeps a
    # reader thread that touches Ray after the fixture shuts it down, and Ray then ends this process
    batch = list(batches)[0]
    n = batch["valid"].sum(1)
    assert batch["tokens"].shape == (8, int(n.max()), 16) and len(set(n.tolist())) > 1  # padded, sizes differ
    assert batch["edges"].shape[1] == batch["edge_hidden"].shape[0] and int(batch["edges"].max()) < int(n.sum())
    assert batch["target"].shape == (int(batch["mask"].sum()), 16)
    loss = recipe.build_model().loss(batch)
    assert torch.isfinite(loss)
