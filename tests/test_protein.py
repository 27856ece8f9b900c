"""Protein masked LM: BERT's 80/10/10 masking, the ESM transformer on padded batches, the tied LM
head, and FASTA files preprocessed and pretrained through the CLI."""

import gzip
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import preprocessed, pretrain_briefly, run_cli
from omnimask.components.layers import apply_rotary, rotary_tables
from omnimask.core.collate import collate_for
from omnimask.core.config import ConfigError, load_recipe
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import MaskIndex
from omnimask.core.recipe import Recipe
from omnimask.data.loader import SamplePipeline
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.protein import alphabet
from omnimask.modalities.protein.examples import build_demo_proteins
from omnimask.modalities.protein.maskers import BertMasker

BERT = BertMasker(BertMasker.Config())


@pytest.mark.parametrize("length", [3, 4, 12, 100, 1024])
def test_bert_masks_15_percent_of_residues_never_specials_same_for_a_seed(length):
    layout = TokenLayout((length,), 1)
    expected = max(1, int(0.15 * (length - 2) + 0.5))
    for seed in range(20):
        mask = BERT(layout, seed)
        assert mask.shape == (length,) and int(mask.sum()) == expected == BERT.num_masked(layout)
        assert not mask[0] and not mask[-1]  # <cls> and <eos>
        assert torch.equal(mask, BERT(layout, seed))
    if length >= 100:
        assert len({tuple(BERT(layout, s).nonzero().squeeze(1).tolist()) for s in range(20)}) == 20


def test_bert_corruption_is_80_10_10_over_many_draws():
    g = np.random.default_rng(0)
    seq = "".join(g.choice(list(alphabet.RESIDUES), 1000))
    tokens = torch.from_numpy(alphabet.encode(seq).astype(np.uint8))[:, None]
    layout = TokenLayout((tokens.shape[0],), 1)
    fates = np.zeros(3)
    for seed in range(300):
        mask = BERT(layout, seed)
        out, mask_token = BERT.corrupt(tokens, mask, seed)
        assert torch.equal(out[~mask], tokens[~mask]) and not mask_token[~mask].any()  # visible tokens untouched
        assert (out[mask_token] == alphabet.MASK).all()
        changed = mask & ~mask_token & (out[:, 0] != tokens[:, 0])
        assert np.isin(out[changed, 0].numpy(), alphabet.STANDARD).all()  # random replacements are residues
        fates += [int(mask_token.sum()), int(changed.sum()), int((mask & ~mask_token & ~changed).sum())]
        again = BERT.corrupt(tokens, mask, seed)
        assert torch.equal(again[0], out) and torch.equal(again[1], mask_token)
    share = fates / fates.sum()
    # 80% <mask>; 10% random, of which 1 in 20 draws the residue it replaces (then it reads as unchanged)
    assert abs(share[0] - 0.8) < 0.01 and abs(share[1] - 0.095) < 0.01 and abs(share[2] - 0.105) < 0.01, share


def test_rotary_attention_depends_on_relative_positions_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)
    cos, sin = rotary_tables(40, 16)
    rot = lambda x, i: apply_rotary(x[None], cos[i : i + 1], sin[i : i + 1])[0]  # noqa: E731  (a one-line helper for the asserts below)
    base = rot(q, 3) @ rot(k, 10)
    assert torch.allclose(base, rot(q, 20) @ rot(k, 27), atol=1e-5)
    assert not torch.allclose(base, rot(q, 3) @ rot(k, 11), atol=1e-3)
    assert torch.allclose(rot(q, 0), q)


def batch_of(recipe, seqs, seed=0):
    pipeline = SamplePipeline(recipe, seed)
    samples = [pipeline(f"s{i}", {"seq": s.encode(), "json": b"{}"}, 0) for i, s in enumerate(seqs)]
    return collate_for(recipe.tokenizer)(samples)


@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_padding_does_not_change_what_the_encoder_computes(positions):
    recipe = Recipe.from_config(load_recipe("esm_mlm_tiny", [f"model.encoder.positions={positions}"]))
    model = recipe.build_model().eval()
    short, long = "MKTAYIAKQRQISFVKSHFSRQ", "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSH"
    both = batch_of(recipe, [short, long])
    alone = batch_of(recipe, [short])
    assert both["tokens"].shape[:2] == (2, len(long) + 2) and both["valid"].sum(1).tolist() == [len(short) + 2, len(long) + 2]
    assert (both["tokens"][0, len(short) + 2 :, 0] == alphabet.PAD).all()
    with torch.no_grad():
        lat_both = model.encoder(recipe.tokenizer.prepare(both["tokens"]), MaskIndex.from_batch(both))
        lat_alone = model.encoder(recipe.tokenizer.prepare(alone["tokens"]), MaskIndex.from_batch(alone))
    assert torch.allclose(lat_both[0, : len(short) + 2], lat_alone[0], atol=1e-5)


def test_lm_head_is_tied_to_the_embedding_and_its_loss_is_cross_entropy():
    recipe = Recipe.from_config(load_recipe("esm_mlm_tiny"))
    model = recipe.build_model()
    assert model.head.weight is model.encoder.embed.weight
    batch = batch_of(recipe, ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "ACDEFGHIKLMNPQRSTVWY", "MKV"])
    pred = model(batch["tokens"], MaskIndex.from_batch(batch))
    m = int(batch["mask"].sum())
    assert pred.shape == (m, 33) and batch["target"].shape == (m, 1)
    truth = torch.cat([torch.from_numpy(alphabet.encode(s)) for s in ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "ACDEFGHIKLMNPQRSTVWY", "MKV"]])
    assert torch.equal(batch["target"][:, 0].long(), truth[torch.cat([r[v] for r, v in zip(batch["mask"], batch["valid"])])])
    assert torch.allclose(model.loss(batch), F.cross_entropy(pred, batch["target"][:, 0].long()))


def test_variable_length_tokens_need_a_masker_that_shows_every_token():
    with pytest.raises(ConfigError, match="model.masker: .*bert, graphmae"):
        Recipe.from_config(load_recipe("esm_mlm_tiny", ["model.masker={name: random}"]))


@pytest.fixture(scope="module")
def protein_dataset(tmp_path_factory):
    return preprocessed(tmp_path_factory, "protein", lambda raw: build_demo_proteins(raw, 120, seed=4), samples_per_shard=32)


def test_fasta_files_are_accounted_for_and_esm_mlm_tiny_pretrains_through_the_cli(protein_dataset, tmp_path):
    root, records, manifest = protein_dataset
    assert manifest.num_inputs == records == 123 and manifest.num_samples == 121 and manifest.num_quarantined == 2
    reasons = {q["source"].split(":", 1)[1]: q["reason"] for q in read_quarantine(root / "shards")}
    assert reasons["empty_record"] == "empty sequence" and "outside the protein alphabet" in reasons["bad_chars"]
    dups = [json.loads(line) for line in (root / "shards" / "duplicates.jsonl").read_text().splitlines()]
    assert [d["source"].split(":", 1)[1] for d in dups] == ["copy_of_demo0000"]
    pretrain_briefly("esm_mlm_tiny", root / "shards", tmp_path, batch_size=16, steps=40, picture=False, overrides=("data.max_tokens=2048",))
    # the lengths behind token budgets are checked like the shards
    assert "verify       OK" in run_cli(["inspect", str(root / "shards"), "--verify"], tmp_path).stdout
    sizes = root / "shards" / "sizes.npy"
    assert np.load(sizes).tolist() == [len(s) for s in residues_in_shard_order(root / "shards", manifest)]


def test_bad_bytes_quarantine_one_record_and_every_record_is_accounted_for(tmp_path):
    """One Latin-1 byte in a header and one in a sequence cost one record each; a binary file and a file
    without records are one quarantined input each; the manifest counts every record once."""
    from omnimask.data.preprocess import preprocess

    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [f">r{i} protein\nMKTAYIAKQR{'ACDEFGHIKL' * (i % 7)}\n".encode() for i in range(45)]
    header, sequence = list(lines), list(lines)
    header[43] = b">weird caf\xe9 protein\nMKTAYIAK\n"
    sequence[9] = b">r9 protein\nMKTA\nYI\xa0AK\n"
    (raw / "header.fasta").write_bytes(b"".join(header))
    (raw / "sequence.fasta.gz").write_bytes(gzip.compress(b"".join(sequence)))
    (raw / "binary.fasta").write_bytes(bytes(range(256)) * 64)
    (raw / "comments.fasta").write_bytes(b"; nothing but a comment\n")
    manifest = preprocess("protein", raw, tmp_path / "shards", samples_per_shard=16, executor="processes", num_cpus=1)
    reasons = {q["source"]: q["reason"] for q in read_quarantine(tmp_path / "shards")}
    assert sorted(reasons) == ["binary.fasta", "comments.fasta", "header.fasta#44:weird", "sequence.fasta.gz#10:r9"]
    assert reasons["header.fasta#44:weird"] == r"not ASCII text: byte 0xe9 on line 87, in the header of record 44 (>weird caf\xe9 protein)"
    assert reasons["sequence.fasta.gz#10:r9"] == "not ASCII text: byte 0xa0 on line 21, in the sequence of record 10 (>r9 protein)"
    assert manifest.num_samples == 88 and manifest.num_quarantined == 4
    assert manifest.num_inputs == 45 + 45 + 1 + 1 == manifest.num_samples + manifest.num_quarantined


def residues_in_shard_order(root, manifest):
    from omnimask.io.formats import iter_shard

    return [members["seq"].decode() for shard in manifest.shards for _, members in iter_shard(manifest.format, root / shard.path)]


def test_token_budget_batches_cover_the_epoch_within_the_budget():
    from omnimask.data.order import budget_batches

    g = np.random.default_rng(0)
    tokens = g.integers(10, 1000, 2000)
    batches = budget_batches(tokens, 4096, 256, seed=1, epoch=0)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(2000))  # every position once
    assert all(len(b) * tokens[b].max() <= 4096 or len(b) == 1 for b in batches)
    assert all(b.max() - b.min() < 256 for b in batches)  # sorted within runs of the order only
    again = budget_batches(tokens, 4096, 256, seed=1, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again)) and len(again) == len(batches)
    other = budget_batches(tokens, 4096, 256, seed=1, epoch=1)
    assert any(not np.array_equal(a, b) for a, b in zip(batches, other))
    # length grouping wastes little on padding; the same number of batches cut at random wastes much more
    useful = tokens.sum()
    padded = sum(len(b) * tokens[b].max() for b in batches)
    random_cut = np.array_split(g.permutation(2000), len(batches))
    assert useful / padded > 0.85 and useful / sum(len(b) * tokens[b].max() for b in random_cut) < 0.6
    assert [len(b) for b in budget_batches(np.array([5000, 3]), 4096, 256, 0, 0)] == [1, 1]  # too long: alone


def test_budget_plan_positions_advance_over_epochs_of_different_lengths():
    from omnimask.data.order import BudgetPlan, Position, advance

    tokens = np.random.default_rng(2).integers(5, 300, 90)
    plan = BudgetPlan([30, 25, 35], tokens, seed=0, window=2, world_size=2, max_tokens=1200, sort_window=40)
    assert len({plan.epoch_len(e) for e in range(6)}) > 1  # batches per epoch vary
    pos = Position()
    for step in range(1, 40):
        pos = advance(pos, 1, plan.step_size, plan.epoch_len)
        assert advance(Position(), step, plan.step_size, plan.epoch_len) == pos
        assert pos.offset % 2 == 0 and pos.offset < plan.epoch_len(pos.epoch)


def budget_stream(root, rank=0, world=1, start=None, epochs=1, max_tokens=1500):
    from omnimask.data.loader import ShardStream
    from omnimask.data.order import Position

    recipe = Recipe.from_config(load_recipe("esm_mlm_tiny"))
    return ShardStream(
        root / "shards",
        SamplePipeline(recipe, 0),
        seed=0,
        window=2,
        rank=rank,
        world_size=world,
        start=start or Position(),
        epochs=epochs,
        max_tokens=max_tokens,
        sort_window=64,
    ), collate_for(recipe.tokenizer)


def test_a_loader_worker_sends_the_same_padded_batches_in_one_shared_segment_each(protein_dataset):
    from omnimask.core.config import DataConfig
    from omnimask.data.loader import build_loader

    root, _, _ = protein_dataset
    stream, collate = budget_stream(root)
    expected = list(stream.iter_batches(collate))
    recipe = Recipe.from_config(load_recipe("esm_mlm_tiny"))
    got = list(
        build_loader(
            recipe,
            data=DataConfig(path=root / "shards", batch_size=1, num_workers=1, shuffle_window=2, max_tokens=1500, sort_window=64),
            seed=0,
            epochs=1,
        )
    )
    assert [b["keys"] for b in got] == [b["keys"] for b in expected]
    for ours, theirs in zip(got, expected):
        tensors = {k: v for k, v in ours.items() if torch.is_tensor(v)}
        assert tensors.keys() == {k for k, v in theirs.items() if torch.is_tensor(v)} and len(tensors) >= 3
        assert all(torch.equal(v, theirs[k]) for k, v in tensors.items())
        assert len({v.untyped_storage().data_ptr() for v in tensors.values()}) == 1  # padded: one segment, not one each


def test_loader_fills_batches_to_the_token_budget_and_resumes_exactly(protein_dataset):
    from omnimask.data.order import advance

    root, _, manifest = protein_dataset
    stream, collate = budget_stream(root)
    batches = list(stream.iter_batches(collate))
    keys = [k for b in batches for k in b["keys"]]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == manifest.num_samples  # the epoch, once
    assert all(b["tokens"].shape[0] * b["tokens"].shape[1] <= 1500 for b in batches)
    assert len({b["tokens"].shape[0] for b in batches}) > 2  # short sequences share a batch, long ones don't
    # two ranks, then a resume at step 3 on one rank: the same batches, in step order
    ranks = [list(budget_stream(root, r, 2)[0].iter_batches(collate)) for r in (0, 1)]
    plan = budget_stream(root, 0, 2)[0].plan
    at = advance(budget_stream(root)[0].start, 3, plan.step_size, plan.epoch_len)
    resumed, _ = budget_stream(root, 0, 1, start=at)
    tail = [b["keys"] for b in resumed.iter_batches(collate)]
    two_rank_order = [b["keys"] for step in zip(*ranks) for b in step]
    assert tail[:4] == two_rank_order[6:10] and ranks[0][0]["keys"] == batches[0]["keys"] and ranks[1][0]["keys"] == batches[1]["keys"]
