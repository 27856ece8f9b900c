"""GraphMAE (``graphmae*``) against the baseline written from THUDM/GraphMAE's code
(``benchmarks/reference_graphmae.py``), and the checkpoint layout between them (``omnimask/weights/graphmae.py``).

The equality tests use the batch's mask (``same_mask``): omnimask masks each graph alone, GraphMAE the batched
graph (``encoding_mask_noise``), so the two draw different masks by design.
"""

from __future__ import annotations

import io
import re

import pytest
import torch
import torch.nn.functional as F

from benchmarks.fidelity import NO_DROPOUT as NO_DROPOUT_BY_ENCODER
from benchmarks.fidelity import built, compare
from benchmarks.reference_graphmae import Graph, ReferenceGraphMAE
from omnimask.core.networks import MaskIndex
from omnimask.weights.graphmae import LAYOUT

TOLERANCE = 1e-5  # relative, float32 on both sides

# The generated test graphs carry no node labels, which the base recipe's features are (PROTEINS' 3 labels): they
# take one-hot degrees of the same width instead. graphmae_node's 1433 Cora attributes likewise become 1433-wide
# one-hot degrees, on one graph (its recipe's batch). The tiny GIN recipe also runs as GAT, at 4 heads.
CASES: dict[str, tuple[str, tuple[str, ...], int]] = {
    "graphmae_tiny": ("graphmae_tiny", (), 2),
    "graphmae_tiny[gat]": ("graphmae_tiny", ("model.encoder.kind=gat", "model.head.kind=gat"), 2),
    "graphmae": ("graphmae", ("model.tokenizer.features=degree",), 2),
    "graphmae_node": ("graphmae_node", ("model.tokenizer.features=degree",), 1),
}
NO_DROPOUT = NO_DROPOUT_BY_ENCODER["gnn"]

BIAS_BEFORE_BATCH_NORM = re.compile(r"(encoder\.gnn|head\.decoder)\.layers\.\d+\.nn\.0\.bias|encoder\.gnn\.layers\.\d+\.nn\.3\.bias")
"""GIN's linear biases that feed a BatchNorm (the MLP's inner one; an encoding layer's ``post`` one after the MLP).
In train mode the batch mean takes them out again: their exact gradient is zero, and each side gives float
rounding of it (1e-17 of the largest gradient in float64, up to 1e-8 in float32), which a relative figure
compares only while both sides round alike: :func:`test_train_mode_gradients_equal_in_float64` bounds them
against the model's largest gradient instead."""


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", list(CASES))
def test_loss_predictions_and_gradients_equal_the_reference(case, train):
    name, overrides, batch_size = CASES[case]
    r = compare(name, overrides, batch_size=batch_size, train=train)
    assert r["grad_missing"] == []
    assert len(r["grad_rel"]) > 0
    assert r["loss_rel"] < TOLERANCE, r["loss"]
    assert r["pred_rel"] < TOLERANCE
    checked = {k: v for k, v in r["grad_rel"].items() if not (train and BIAS_BEFORE_BATCH_NORM.fullmatch(k))}
    worst = max(checked, key=checked.get)
    assert checked[worst] < TOLERANCE, (worst, checked[worst])


def test_train_mode_gradients_equal_in_float64():
    """The base GIN in train mode, both sides in float64: every gradient equal within 1e-10 relative, and the
    biases before a BatchNorm (left out above) both within 1e-12 of the largest gradient, their exact 0. Its
    train-mode BatchNorms make a few gradients ill-conditioned (a PReLU slope's is a small sum of large terms:
    either side alone is 3e-4 from its float64 value in float32), so this is where equal maths shows beyond
    float32 rounding. omnimask's side runs its encoder and head on float64 tokens (``tokenizer.prepare`` casts to
    float32) and takes the SCE in float64 (``scaled_cosine_error`` computes in float32; its float32 form is
    checked above)."""
    recipe, model, batch = built("graphmae", CASES["graphmae"][1] + NO_DROPOUT)
    model.train()
    reference = ReferenceGraphMAE.from_model(recipe, model).double()
    model.double()
    index = MaskIndex.from_batch(batch)
    pred = model.head(model.encoder(batch["tokens"].double(), index), index)
    cos = (F.normalize(pred, dim=-1) * F.normalize(batch["target"].double(), dim=-1)).sum(dim=-1)
    (1 - cos).pow(model.head.gamma).mean().backward()
    g, x, masking = reference.args(batch, same_mask=True)
    reference(g, x.double(), masking._replace(noise_features=masking.noise_features.double())).backward()
    theirs = LAYOUT.from_reference({k: p.grad for k, p in reference.named_parameters()}, recipe)
    scale = max(float(t.abs().max()) for t in theirs.values())
    for k, p in model.named_parameters():
        diff = float((p.grad - theirs[k]).abs().max())
        if BIAS_BEFORE_BATCH_NORM.fullmatch(k):
            assert diff <= 1e-12 * scale and float(theirs[k].abs().max()) <= 1e-12 * scale, k
        else:
            assert diff <= 1e-10 * float(theirs[k].abs().max()), k


def test_the_reference_computes_the_same_gradients_twice():
    """The baseline gathers with ``index_select`` (whose backward, ``index_add_``, sums in edge order): advanced
    indexing's backward accumulates on several CPU threads in no fixed order, and made repeated runs differ by
    4e-5 on the PReLU slopes of the base recipe in train mode."""
    recipe, model, batch = built("graphmae", CASES["graphmae"][1] + NO_DROPOUT)
    reference = ReferenceGraphMAE.from_model(recipe, model.train())
    args = reference.args(batch, same_mask=True)
    grads = []
    for _ in range(2):
        reference.zero_grad()
        reference(*args).backward()
        grads.append({k: p.grad.clone() for k, p in reference.named_parameters()})
    assert all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])


# Pins the maths: the loss of omnimask's graphmae_tiny (torch.manual_seed(0) before building, two graphs of
# benchmarks.train_step.real_batch, eval mode), measured after "Fidelity: model settings" (self-loops, GIN
# decoder MLP) with the batch-level GraphMAE masker (count: batch), where the reference baseline gives the same.
# A change of either side's computation, or of the masker's draws, fails here loudly. (With per-graph masking,
# count: graph, the same batch gave 1.0731549263000488.)
GOLDEN_TINY_LOSS = 1.0011461973190308


def test_golden_loss_of_the_tiny_recipe():
    recipe, model, batch = built("graphmae_tiny")
    reference = ReferenceGraphMAE.from_model(recipe, model.eval())
    with torch.no_grad():
        ours = float(model.loss(batch))
        theirs = float(reference(*reference.args(batch, same_mask=True)))
    assert ours == pytest.approx(GOLDEN_TINY_LOSS, rel=TOLERANCE)
    assert theirs == pytest.approx(GOLDEN_TINY_LOSS, rel=TOLERANCE)


def test_the_reference_draws_its_own_mask_over_the_batched_graph():
    """Without ``same_mask`` the baseline gets the true features and masks inside, ``int(ratio * T)`` nodes of
    the whole batch (``encoding_mask_noise``), a new draw each call."""
    recipe, model, batch = built("graphmae_tiny")
    reference = ReferenceGraphMAE.from_model(recipe, model.eval())
    g, x = reference.args(batch)
    hidden = batch["mask"][batch["valid"]]
    assert torch.equal(x[hidden], batch["target"]) and torch.equal(x[~hidden], batch["tokens"][batch["valid"]][~hidden])
    with torch.no_grad():
        first, second = float(reference(g, x)), float(reference(g, x))
    assert first != second
    assert len(reference.draw_masking(x, 0.5).mask_nodes) == int(0.5 * batch["num_valid"])


def test_the_reference_replaces_as_its_code_counts():
    """``encoding_mask_noise`` with a replace rate: ``int(0.9 M)`` nodes get [MASK], the last ``int(0.1 M)`` of
    the same permutation another node's features, and a hidden node left over by the two roundings keeps its
    own. Where ``int(0.1 M)`` is 0, ``perm_mask[-0:]`` selects every hidden node and the reference fails."""
    recipe, model, _ = built("graphmae_tiny", ("model.masker.replace_rate=0.1",))
    reference = ReferenceGraphMAE.from_model(recipe, model.eval())
    x = torch.randn(68, recipe.tokenizer.layout.token_dim)
    m = reference.draw_masking(x, 0.5)  # M = 34: 30 [MASK], 3 replaced, 1 shown as it is
    assert (len(m.token_nodes), len(m.noise_nodes), len(m.noise_features)) == (30, 3, 3)
    assert len(set(m.token_nodes.tolist()) | set(m.noise_nodes.tolist())) == 33
    with pytest.raises(RuntimeError, match="shape mismatch"):
        reference.encoding_mask_noise(None, x[:8], 0.5)  # M = 4


def test_args_give_every_graph_one_self_loop_per_node_and_batch_them():
    """As ``data_util.load_graph_classification_dataset`` and ``dgl.batch``: each graph's own loops removed, one
    per node appended after its edges, the graphs one after the other."""
    recipe, model, batch = built("graphmae_tiny")
    batch["edges"] = torch.cat([batch["edges"], torch.tensor([[3], [3]])], dim=1)  # a loop in the data
    g, _ = ReferenceGraphMAE.from_model(recipe, model).args(batch)
    sizes = batch["valid"].sum(1).tolist()
    assert g.num_graphs_nodes == tuple(sizes)
    loops = g.src == g.dst
    assert int(loops.sum()) == sum(sizes) and torch.equal(g.src[loops], torch.arange(sum(sizes)))
    real = batch["edges"][:, batch["edges"][0] != batch["edges"][1]]
    assert torch.equal(torch.stack([g.src[~loops], g.dst[~loops]]), real)
    first = int((real[0] < sizes[0]).sum())  # the first graph's edges, then its loops
    assert bool(loops[first : first + sizes[0]].all()) and not bool(loops[:first].any())


@pytest.mark.parametrize("case", list(CASES))
def test_from_reference_inverts_to_reference(case):
    name, overrides, _ = CASES[case]
    recipe, model, _ = built(name, overrides, batch_size=1)
    ours = model.state_dict()
    theirs = LAYOUT.to_reference(ours, recipe)
    reference = ReferenceGraphMAE.from_model(recipe, model)  # loads ``theirs`` strictly
    assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in reference.state_dict().items()}
    back = LAYOUT.from_reference({**theirs, "decoder.unknown.weight": torch.zeros(1)}, recipe)
    assert set(back) == set(ours)
    for k, v in ours.items():
        assert torch.equal(back[k], v), k


def test_reference_names_of_gin_and_gat():
    recipe, model, _ = built("graphmae_tiny", batch_size=1)
    names = set(LAYOUT.to_reference(model.state_dict(), recipe))
    assert {
        "enc_mask_token",
        "encoder_to_decoder.weight",
        "encoder.layers.1.eps",
        "encoder.layers.1.apply_func.mlp.linears.1.weight",
        "encoder.layers.0.apply_func.mlp.norms.0.running_var",
        "encoder.layers.0.apply_func.mlp.activations.0.weight",
        "encoder.layers.1.apply_func.norm.num_batches_tracked",
        "encoder.layers.1.apply_func.act.weight",
        "decoder.layers.0.apply_func.linears.1.bias",
        "decoder.layers.0.apply_func.norms.0.running_mean",
    } <= names
    recipe, model, _ = built("graphmae_tiny", CASES["graphmae_tiny[gat]"][1], batch_size=1)
    state = LAYOUT.to_reference(model.state_dict(), recipe)
    assert {k: tuple(v.shape) for k, v in state.items() if k.startswith(("encoder.gat_layers.1", "decoder"))} == {
        "encoder.gat_layers.1.fc.weight": (64, 64),
        "encoder.gat_layers.1.attn_l": (1, 4, 16),
        "encoder.gat_layers.1.attn_r": (1, 4, 16),
        "encoder.gat_layers.1.bias": (64,),
        "encoder.gat_layers.1.activation.weight": (1,),
        "decoder.gat_layers.0.fc.weight": (16, 64),
        "decoder.gat_layers.0.attn_l": (1, 1, 16),
        "decoder.gat_layers.0.attn_r": (1, 1, 16),
        "decoder.gat_layers.0.bias": (16,),
    }


def test_wrap_and_unwrap_round_trip_through_a_file():
    recipe, model, _ = built("graphmae_tiny", batch_size=1)
    state = LAYOUT.to_reference(model.state_dict(), recipe)
    buf = io.BytesIO()
    torch.save(LAYOUT.wrap(state, recipe), buf)  # GraphMAE saves the state dict itself
    buf.seek(0)
    loaded = LAYOUT.unwrap(torch.load(buf, weights_only=True))
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    for other in ({"model": state}, {f"module.{k}": v for k, v in state.items()}):
        assert set(LAYOUT.unwrap(other)) == set(state)


def test_from_model_refuses_what_the_reference_cannot_compute():
    """GraphMAE's encoder and decoder share ``feat_drop``/``attn_drop``; its GAT decoder has one head."""
    for overrides in (
        ("model.head.in_drop=0.1",),
        ("model.encoder.kind=gat", "model.head.kind=gat", "model.head.heads=2"),
        ("model.encoder.self_loops=false",),
    ):
        recipe, model, _ = built("graphmae_tiny", overrides, batch_size=1)
        with pytest.raises(ValueError):
            ReferenceGraphMAE.from_model(recipe, model)


def test_graph_helpers_follow_dgl():
    """``add_self_loop`` appends after the edges; ``batch`` offsets node ids graph after graph."""
    a = Graph(torch.tensor([0, 1]), torch.tensor([1, 1]), (2,)).remove_self_loop().add_self_loop()
    assert a.src.tolist() == [0, 0, 1] and a.dst.tolist() == [1, 0, 1]
    both = Graph.batch([a, a])
    assert both.src.tolist() == [0, 0, 1, 2, 2, 3] and both.num_graphs_nodes == (2, 2)
