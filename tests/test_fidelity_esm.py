"""ESM-2 (``esm_mlm*``) against the baseline written from facebookresearch/esm's code (``benchmarks/reference_esm.py``),
and the checkpoint layout between them (``omnimask/weights/esm.py``).

ESM-2 has no dropout and no batch statistics, so train mode computes what eval mode does; both are checked
all the same, so that a stochastic piece added to either side shows up here.
"""

from __future__ import annotations

import argparse
import io
from typing import Any

import pytest
import torch

from benchmarks.fidelity import built, compare
from omnimask.weights.esm import LAYOUT, inv_freq

TOLERANCE = 1e-5  # relative, float32 on both sides

# The base (35M) recipe runs on one sequence cropped to 62 residues (64 tokens): its sizes are what this
# checks (480 wide, 20 heads of 24, 12 layers), and a full-length pair of sequences costs a minute on two cores.
# The tiny recipe runs on two sequences of different lengths, so padding (key mask, token-dropout share,
# zeroed rows) is checked there.
CASES = {
    "esm_mlm_tiny": {"overrides": (), "batch_size": 2},
    "esm_mlm": {"overrides": ("data.augment.max_residues=62",), "batch_size": 1},
}


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", list(CASES))
def test_loss_predictions_and_gradients_equal_the_reference(name, train):
    r = compare(name, CASES[name]["overrides"], batch_size=CASES[name]["batch_size"], train=train)
    assert r["grad_missing"] == []
    assert len(r["grad_rel"]) > 0
    assert r["loss_rel"] < TOLERANCE, r["loss"]
    assert r["pred_rel"] < TOLERANCE
    worst = max(r["grad_rel"], key=r["grad_rel"].get)
    assert r["grad_rel"][worst] < TOLERANCE, (worst, r["grad_rel"][worst])


def test_the_tiny_batch_pads_and_masks_as_the_equality_test_needs():
    """The tiny case's batch really exercises padding and token dropout: two lengths, and <mask> in both."""
    _, _, batch = built("esm_mlm_tiny")
    lengths = batch["valid"].sum(1)
    assert lengths[0] != lengths[1]
    assert ((batch["tokens"][..., 0] == 32) & batch["valid"]).sum(1).min() > 0


# Pins the maths: the loss of omnimask's esm_mlm_tiny (torch.manual_seed(0) before building, two sequences of
# benchmarks.train_step.real_batch), measured after "Fidelity: model settings" (LayerNorm eps 1e-5), where
# the reference baseline gives the same. A change of either side's computation fails here loudly.
GOLDEN_TINY_LOSS = 3.487330198287964


def test_golden_loss_of_the_tiny_recipe():
    recipe, model, batch = built("esm_mlm_tiny")
    from benchmarks.reference_esm import PlainESM

    reference = PlainESM.from_model(recipe, model)
    with torch.no_grad():
        ours = float(model.eval().loss(batch))
        theirs = float(reference.eval()(*reference.args(batch, same_mask=True)))
    assert ours == pytest.approx(GOLDEN_TINY_LOSS, rel=TOLERANCE)
    assert theirs == pytest.approx(GOLDEN_TINY_LOSS, rel=TOLERANCE)


def test_the_baseline_takes_the_batch_corruption_either_way():
    """ESM-2 masks in the data (fairseq's MaskTokensDataset), not in the model: without ``same_mask`` the
    baseline still gets the batch's corrupted ids, and fairseq's target (<pad> but at the hidden positions)."""
    from benchmarks.reference_esm import PlainESM

    recipe, model, batch = built("esm_mlm_tiny")
    reference = PlainESM.from_model(recipe, model)
    own, same = reference.args(batch), reference.args(batch, same_mask=True)
    for a, b in zip(own, same):
        assert torch.equal(a, b)
    tokens, target = own
    assert torch.equal(tokens, batch["tokens"][..., 0].long())
    assert torch.equal(target != 1, batch["mask"])
    assert torch.equal(target[batch["mask"]], batch["target"].reshape(-1).long())
    assert torch.equal(reference(*own), reference(*own))  # nothing drawn inside


def test_omnimask_tokenizes_with_esm2s_alphabet():
    from benchmarks.reference_esm import esm1b_alphabet
    from omnimask.modalities.protein import alphabet

    assert alphabet.TOKENS == esm1b_alphabet().all_toks


def test_to_reference_gives_the_reference_every_tensor_it_holds():
    """The layout's output loads strictly (in from_model), with the buffers the reference persists; the
    contact head, which omnimask does not train, is zeros."""
    from benchmarks.reference_esm import PlainESM

    recipe, model, _ = built("esm_mlm_tiny")
    state = LAYOUT.to_reference(model.state_dict(), recipe)
    reference = PlainESM.from_model(recipe, model)
    assert set(state) == set(reference.state_dict())
    assert all(state[k].shape == v.shape for k, v in reference.state_dict().items())
    assert torch.equal(state["layers.1.self_attn.rot_emb.inv_freq"], inv_freq(64 // 4))
    contacts = state["contact_head.regression.weight"]
    assert contacts.shape == (1, 2 * 4) and not contacts.any()
    qkv = model.state_dict()["encoder.blocks.0.attn.qkv.weight"]
    assert torch.equal(state["layers.0.self_attn.k_proj.weight"], qkv[64:128])
    assert reference.lm_head.weight is reference.embed_tokens.weight


@pytest.mark.parametrize("name", list(CASES))
def test_from_reference_inverts_to_reference(name):
    recipe, model, _ = built(name, CASES[name]["overrides"], batch_size=1)
    ours = model.state_dict()
    back = LAYOUT.from_reference(LAYOUT.to_reference(ours, recipe), recipe)
    assert set(back) == set(ours)
    for k, v in ours.items():
        assert torch.equal(back[k], v), k


def test_from_reference_rejects_other_rotary_frequencies():
    recipe, model, _ = built("esm_mlm_tiny")
    state = LAYOUT.to_reference(model.state_dict(), recipe)
    state["layers.0.self_attn.rot_emb.inv_freq"] = state["layers.0.self_attn.rot_emb.inv_freq"] * 2
    with pytest.raises(ValueError, match="inv_freq"):
        LAYOUT.from_reference(state, recipe)


@pytest.mark.parametrize("override", ["model.head.tie=false", "model.encoder.positions=learned"])
def test_settings_esm2_cannot_hold_are_refused(override):
    recipe, model, _ = built("esm_mlm_tiny", (override,))
    with pytest.raises(ValueError, match="ESM-2"):
        LAYOUT.to_reference(model.state_dict(), recipe)


def load_as_esm_pretrained(obj: dict[str, Any], name: str = "esm2_t2_64") -> Any:
    """What ``esm.pretrained.load_model_and_alphabet_core(name, obj)`` does with an ESM-2 file, on the
    baseline's ESM2: the "esm2" name prefix picks ``_load_model_and_alphabet_core_v2``, which strips the
    fairseq prefixes, sizes the model from ``cfg["model"]`` by attribute, and the key check that allows
    only the contact regression to be missing; then a non-strict load (no regression file)."""
    import re

    from benchmarks.reference_esm import ESM2, esm1b_alphabet

    assert name.startswith("esm2")
    cfg = obj["cfg"]["model"]
    state = {re.sub(r"^(encoder\.sentence_encoder\.|encoder\.)", "", k): v for k, v in obj["model"].items()}
    model = ESM2(
        num_layers=cfg.encoder_layers,
        embed_dim=cfg.encoder_embed_dim,
        attention_heads=cfg.encoder_attention_heads,
        alphabet=esm1b_alphabet(),
        token_dropout=cfg.token_dropout,
    )
    expected, found = set(model.state_dict()), set(state)
    assert expected - found == {"contact_head.regression.weight", "contact_head.regression.bias"}
    assert found - expected == set()
    model.load_state_dict(state, strict=False)
    return model


def test_wrap_writes_what_esm_pretrained_loads_and_unwrap_reads_it_back():
    from benchmarks.reference_esm import PlainESM

    recipe, model, batch = built("esm_mlm_tiny")
    state = LAYOUT.to_reference(model.state_dict(), recipe)
    buffer = io.BytesIO()
    torch.save(LAYOUT.wrap(state, recipe), buffer)
    buffer.seek(0)
    with torch.serialization.safe_globals([argparse.Namespace]):  # ESM's cfg is read by attribute
        obj = torch.load(buffer, weights_only=True)
    assert {".".join(k.split(".")[:2]) for k in obj["model"]} == {"encoder.sentence_encoder", "encoder.lm_head"}
    assert "encoder.sentence_encoder.layers.0.self_attn.q_proj.weight" in obj["model"]
    assert "encoder.lm_head.weight" in obj["model"]

    loaded = load_as_esm_pretrained(obj)
    reference = PlainESM.from_model(recipe, model)
    tokens = reference.args(batch)[0]
    with torch.no_grad():
        assert torch.equal(loaded.logits(tokens), reference.logits(tokens))

    back = LAYOUT.unwrap(obj)
    without_contacts = {k: v for k, v in state.items() if not k.startswith("contact_head.")}
    assert set(back) == set(without_contacts)
    assert all(torch.equal(back[k], v) for k, v in without_contacts.items())
    plain = LAYOUT.unwrap(state)  # a plain ESM2.state_dict() as it is
    assert set(plain) == set(state)


def test_a_released_layout_checkpoint_round_trips_into_omnimask_with_the_same_loss():
    """export (to_reference, wrap) -> import (unwrap, from_reference) into a fresh model: equal weights, equal loss."""
    recipe, model, batch = built("esm_mlm_tiny")
    obj = LAYOUT.wrap(LAYOUT.to_reference(model.state_dict(), recipe), recipe)
    torch.manual_seed(1)
    fresh = recipe.build_model()
    fresh.load_state_dict(LAYOUT.from_reference(LAYOUT.unwrap(obj), recipe), strict=True)
    assert fresh.head.weight is fresh.encoder.embed.weight
    with torch.no_grad():
        assert float(fresh.eval().loss(batch)) == float(model.eval().loss(batch))
