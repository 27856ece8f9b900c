"""The videomae recipes against VideoMAE's own code (``benchmarks/reference_videomae.py``), and the checkpoint layout
between them (``omnimask/weights/videomae.py``)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.fidelity import compare, relative
from benchmarks.reference_videomae import VideoMAEReference, get_sinusoid_encoding_table
from benchmarks.train_step import build, real_batch
from omnimask.core.networks import MaskIndex
from omnimask.weights.videomae import LAYOUT, patch_embed_to_conv

TOLERANCE = 1e-5
CASES = [
    # (recipe, overrides, batch size): the tiny recipe's own target (normalised pixels, not one the reference has:
    # the baseline's documented "input" deviation), the tiny model with VideoMAE's per-channel normalised target,
    # and the base recipe (one 16 x 224 x 224 clip: the largest input here)
    ("videomae_tiny", [], 2),
    ("videomae_tiny", ["model.target.name=channel_norm_pixels"], 2),
    ("videomae", [], 1),
]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name, overrides, batch_size", CASES, ids=["tiny", "tiny-channel-norm", "base"])
def test_equal_to_the_reference_code(name, overrides, batch_size, train):
    """Loss, hidden-token predictions and every parameter's gradient (mapped back through the layout) on equal
    weights, clips and masks; train mode with stochastic depth off (VideoMAE has no other randomness in the model)."""
    r = compare(name, overrides, batch_size=batch_size, train=train)
    assert r["loss_rel"] <= TOLERANCE, r["loss"]
    assert r["pred_rel"] <= TOLERANCE
    assert not r["grad_missing"]
    worst = max(r["grad_rel"], key=r["grad_rel"].get)
    assert r["grad_rel"][worst] <= TOLERANCE, (worst, r["grad_rel"][worst])


# The loss of the tiny recipe's first seeded batch (torch.manual_seed(0), then real_batch), measured on omnimask's
# model at commit 47b96be ("Fidelity: model settings"), where the baseline gave the same to 1.2e-7 (1.39004183
# and 1.40599525). It pins the maths: a later change of the model, target, tokenizer, masker or loader pipeline
# that moves it fails here loudly, on both sides.
GOLDEN = {"tiny": 1.39004195, "tiny-channel-norm": 1.40599537}


@pytest.mark.parametrize("case", ["tiny", "tiny-channel-norm"])
def test_golden_loss(case):
    overrides = CASES[["tiny", "tiny-channel-norm"].index(case)][1]
    torch.manual_seed(0)
    recipe = build("videomae_tiny", overrides)
    batch = real_batch(recipe, 2)
    model = recipe.build_model().eval()
    reference = VideoMAEReference.from_model(recipe, model).eval()
    with torch.no_grad():
        ours = float(model.loss(batch))
        theirs = float(reference(*reference.args(batch, same_mask=True)))
    assert abs(ours - GOLDEN[case]) <= TOLERANCE * GOLDEN[case], ours
    assert abs(theirs - GOLDEN[case]) <= TOLERANCE * GOLDEN[case], theirs


def test_sinusoid_table_is_the_reference_formula():
    """Channel ``j`` of position ``pos`` is ``sin`` (even ``j``) or ``cos`` (odd ``j``) of
    ``pos / 10000^(2 (j // 2) / d)``, evaluated here value by value."""
    n, d = 10, 12
    table = get_sinusoid_encoding_table(n, d)
    expected = [[(math.sin if j % 2 == 0 else math.cos)(pos / 10000 ** (2 * (j // 2) / d)) for j in range(d)] for pos in range(n)]
    assert table.shape == (1, n, d) and table.dtype == torch.float32
    assert torch.allclose(table[0].double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-7)


QKV = ["model.encoder.qkv_bias=qkv", "model.head.qkv_bias=qkv"]


@pytest.mark.parametrize("overrides", [[], QKV], ids=["qv", "qkv"])
def test_state_dict_round_trip(overrides):
    """omnimask -> VideoMAE's keys and shapes (those of the baseline's own state dict) -> omnimask, every tensor equal."""
    torch.manual_seed(0)
    recipe = build("videomae_tiny", overrides)
    model = recipe.build_model()
    for p in model.parameters():  # no zero biases or unit norms, so that a swapped key cannot pass unseen
        torch.nn.init.normal_(p)
    if overrides:  # a fused bias's k part has no place in VideoMAE's layout (nor any effect on attention)
        for name, p in model.named_parameters():
            if name.endswith("attn.qkv.bias"):
                p.data[p.shape[0] // 3 : 2 * p.shape[0] // 3] = 0
    state = model.state_dict()
    reference = LAYOUT.to_reference(state, recipe)
    expected = VideoMAEReference.from_model(recipe, model).state_dict()
    assert {k: v.shape for k, v in reference.items()} == {k: v.shape for k, v in expected.items()}
    back = LAYOUT.from_reference(reference, recipe)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_checkpoint_object_round_trip():
    recipe = build("videomae_tiny", [])
    state = LAYOUT.to_reference(recipe.build_model().state_dict(), recipe)
    buffer = io.BytesIO()
    torch.save(LAYOUT.wrap(state, recipe), buffer)
    buffer.seek(0)
    loaded = LAYOUT.unwrap(torch.load(buffer, weights_only=True))
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert LAYOUT.unwrap({"module": state}) is state and LAYOUT.unwrap(state) is state


def test_patch_embedding_layouts_agree():
    """omnimask's Linear over a token's values equals VideoMAE's Conv3d over the clip the baseline rebuilds."""
    torch.manual_seed(0)
    recipe = build("videomae_tiny", [])
    tok = recipe.tokenizer
    tokens = torch.randint(0, 256, (2, tok.layout.num_tokens, tok.layout.token_dim), dtype=torch.uint8)
    weight, bias = torch.randn(16, tok.layout.token_dim), torch.randn(16)
    linear = F.linear(tok.prepare(tokens), weight, bias)  # [B, N, 16]
    reference = VideoMAEReference.from_model(recipe, recipe.build_model())
    mask = torch.zeros(2, tok.layout.num_tokens, dtype=torch.bool)
    videos, _ = reference.args({"tokens": tokens, "mask": mask}, same_mask=True)
    kernel = (tok.tubelet_size, tok.patch_size, tok.patch_size)
    conv = F.conv3d(videos, patch_embed_to_conv(weight, tok.tubelet_size, tok.patch_size), bias, stride=kernel)
    assert relative(linear, conv.flatten(2).transpose(1, 2)) <= TOLERANCE


def test_reference_draws_its_own_tube_masks():
    torch.manual_seed(0)
    np.random.seed(0)
    recipe = build("videomae_tiny", [])
    batch = real_batch(recipe, 2)
    reference = VideoMAEReference.from_model(recipe, recipe.build_model()).eval()
    (videos, first), (_, second) = reference.args(batch), reference.args(batch)
    t, h, w = recipe.tokenizer.layout.grid
    for mask in (first, second):
        assert mask.dtype == torch.bool and mask.shape == batch["mask"].shape
        assert (mask.sum(dim=1) == recipe.masker.num_masked(recipe.tokenizer.layout)).all()
        assert (mask.view(-1, t, h * w) == mask.view(-1, t, h * w)[:, :1]).all()  # a tube: the same in every time slot
    assert not torch.equal(first, second)
    with torch.no_grad():
        assert float(reference(videos, first)) != float(reference(videos, second))
    # as many visible tokens as omnimask's tube masker leaves (int(ratio * h * w) hidden per time slot)
    assert MaskIndex.from_batch(batch).ids_keep.shape[1] == (~first).sum(dim=1)[0]
