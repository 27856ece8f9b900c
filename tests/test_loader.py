"""The streaming loader over real shards: shapes, coverage and determinism."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from omnimask.core.config import DataConfig, load_recipe
from omnimask.core.recipe import MaskedModel, Recipe
from omnimask.data.loader import SamplePipeline, SamplesFailed, ShardStream, build_loader

OVERRIDES = ["model.tokenizer.image_size=32", "model.encoder.depth=1", "model.head.depth=1"]


def recipe() -> Recipe:
    return Recipe.from_config(load_recipe("mae_image_tiny", OVERRIDES))


def keys_of(stream: ShardStream) -> list[str]:
    """Keys in stream order, without decoding."""
    return [key for _, _, (key, _) in stream.raw_samples()]


def stream(ds, rank=0, world=1, batch=4, epochs=1, seed=0, window=2, **kw) -> ShardStream:
    return ShardStream(
        ds["shards"],
        SamplePipeline(recipe(), seed),
        seed=seed,
        window=window,
        rank=rank,
        world_size=world,
        batch_size=batch,
        epochs=epochs,
        **kw,
    )


def test_batches_have_the_collated_layout(image_dataset):
    r = recipe()
    loader = build_loader(r, data=DataConfig(path=image_dataset["shards"], batch_size=5, num_workers=2), seed=0)
    batch = next(iter(loader))
    assert batch["tokens"].shape == (5, 16, 192) and batch["tokens"].dtype == torch.uint8
    assert batch["mask"].shape == (5, 16) and batch["mask"].dtype == torch.bool
    assert batch["num_hidden"] == 12 and (batch["mask"].sum(1) == 12).all()
    assert "target" not in batch  # pixels: the model gathers the hidden tokens on the device
    target = MaskedModel.compact_target(batch)
    assert target.shape == (5, 12, 192) and target.dtype == torch.uint8
    assert torch.equal(target, batch["tokens"][batch["mask"]].view(5, 12, 192))
    assert len(batch["keys"]) == 5
    model = r.build_model()
    assert torch.equal(model.loss(batch), model.loss({**batch, "target": batch["tokens"][batch["mask"]].view(5, 12, 192)}))


def test_a_loader_alive_at_exit_stops_its_workers_before_they_are_terminated(image_dataset):
    """Workers still running at exit are terminated by multiprocessing, skipping their clean-up: each would
    leave a pymp-* folder in the temporary directory. build_loader asks them to finish first."""
    script = (
        "import sys\n"
        "from omnimask.core.config import DataConfig, load_recipe\n"
        "from omnimask.core.recipe import Recipe\n"
        "from omnimask.data.loader import build_loader\n"
        f"recipe = Recipe.from_config(load_recipe('mae_image_tiny', {OVERRIDES!r}))\n"
        "loader = build_loader(recipe, data=DataConfig(path=sys.argv[1], batch_size=5, num_workers=2), seed=0)\n"
        "assert next(iter(loader))['tokens'].shape[0] == 5\n"
    )
    temp = Path(tempfile.mkdtemp())  # not under tmp_path: a socket's path must stay under 108 characters
    try:
        subprocess.run(
            [sys.executable, "-c", script, str(image_dataset["shards"])],
            env={**os.environ, "TMPDIR": str(temp)},
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
            timeout=120,
        )
        assert not list(temp.glob("pymp-*"))
    finally:
        shutil.rmtree(temp)


def test_every_rank_and_worker_layout_covers_the_epoch_with_equal_batches(image_dataset, monkeypatch):
    """Each layout sees every sample of an epoch once, plus only the padding of the last step,
    and every rank gets the same number of batches, whatever the shard sizes."""
    import omnimask.data.loader as loader_mod

    n = image_dataset["manifest"].num_samples  # 30, in shards of uneven sizes
    batch = 4
    every_key = set(keys_of(stream(image_dataset, world=1, batch=n)))
    assert len(every_key) == n
    for world, workers in ((1, 1), (2, 2), (3, 1), (4, 3)):
        per_rank = {}
        for rank in range(world):
            keys = []
            for worker in range(workers):
                monkeypatch.setattr(loader_mod, "loader_worker", lambda w=worker, k=workers: (w, k))
                keys += keys_of(stream(image_dataset, rank, world, batch))
            per_rank[rank] = keys
        steps = -(-n // (world * batch))
        assert all(len(k) == steps * batch for k in per_rank.values()), (world, workers)
        seen = [k for keys in per_rank.values() for k in keys]
        assert set(seen) == every_key
        assert len(seen) - len(set(seen)) == steps * world * batch - n  # the padding, nothing else


def test_global_order_does_not_depend_on_the_layout(image_dataset):
    one = keys_of(stream(image_dataset, world=1, batch=4, epochs=2))
    two = [keys_of(stream(image_dataset, rank=r, world=2, batch=2, epochs=2)) for r in (0, 1)]
    merged = [k for step in range(len(two[0]) // 2) for r in (0, 1) for k in two[r][2 * step : 2 * step + 2]]
    assert merged == one
    assert keys_of(stream(image_dataset, seed=1)) == keys_of(stream(image_dataset, seed=1))
    assert keys_of(stream(image_dataset, seed=1)) != keys_of(stream(image_dataset, seed=2))
    assert one[:30] != one[32:62]  # epochs differ (30 samples, padded to 32)


def test_a_stream_started_at_a_position_continues_the_same_order(image_dataset):
    from omnimask.data.order import Position, advance

    full = keys_of(stream(image_dataset, world=1, batch=4, epochs=3))
    start = advance(Position(), 5, 4, 30)
    later = keys_of(stream(image_dataset, world=1, batch=4, epochs=3 - start.epoch, start=start))
    assert later == full[5 * 4 :]
    assert advance(Position(), 8, 4, 30) == Position(1, 0) and advance(Position(0, 8), 20, 4, 30) == Position(2, 24)


def test_shuffle_window_keeps_reads_local(image_dataset):
    """window=1: consecutive samples come from one shard at a time (shards of this set are 3 or 8 samples)."""
    from omnimask.data.order import epoch_order

    counts = [s.num_samples for s in image_dataset["manifest"].shards]
    order = epoch_order(counts, seed=0, epoch=0, window=1)
    changes = int((order[1:, 0] != order[:-1, 0]).sum())
    assert changes == len(counts) - 1
    wide = epoch_order(counts, seed=0, epoch=0, window=len(counts))
    assert int((wide[1:, 0] != wide[:-1, 0]).sum()) > 2 * len(counts)
    assert sorted(map(tuple, order.tolist())) == sorted(map(tuple, wide.tolist()))
    from omnimask.data.order import mean_displacement

    full = mean_displacement(counts, 0, 0, len(counts))  # one window: a uniform shuffle of all 30
    assert 0.2 * 30 < full < 0.5 * 30  # a uniform permutation moves a sample n/3 on average
    assert mean_displacement(counts, 0, 0, 1) > 0


def test_augmentation_and_mask_depend_on_sample_not_worker(image_dataset):
    r = recipe()
    s = stream(image_dataset, seed=5, batch=30)
    first = {o["key"]: o for o in s}
    other = SamplePipeline(r, seed=5)
    raw = {k: m for _, _, (k, m) in s.raw_samples()}
    for key in list(first)[:6]:
        again = other(key, raw[key], 0)
        assert torch.equal(again["tokens"], first[key]["tokens"])
        assert np.array_equal(again["mask"], first[key]["mask"])
    # a new epoch gives a new crop and mask
    key = next(iter(first))
    later = other(key, raw[key], 1)
    assert not np.array_equal(later["mask"], first[key]["mask"]) or not torch.equal(later["tokens"], first[key]["tokens"])


def test_loader_refuses_a_shard_of_the_wrong_size(image_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(image_dataset["shards"], copy)
    shard = copy / image_dataset["manifest"].shards[0].path
    shard.write_bytes(shard.read_bytes()[:-512])
    try:
        ShardStream(copy, SamplePipeline(recipe(), 0))
    except ValueError as e:
        assert shard.name in str(e) and "manifest says" in str(e)
    else:
        raise AssertionError("a truncated shard was accepted")


def test_ray_ingest_pipeline_gives_the_torch_loader_samples(image_dataset):
    """data.loader=ray runs the same SamplePipeline: same tokens, masks and targets per (key, epoch)."""
    import json as _json

    from omnimask.core.config import to_dict
    from omnimask.data.ray_ingest import read_window_rows, run_pipeline, window_units

    cfg = load_recipe("mae_image_tiny", OVERRIDES)
    m = image_dataset["manifest"]
    rows = list(read_window_rows(window_units(cfg, image_dataset["shards"], m, 1)[0]))
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    out = run_pipeline(batch, recipe_json=_json.dumps(to_dict(cfg)))
    assert out["tokens"].dtype == np.uint8 and out["mask"].dtype == np.bool_ and "target" not in out
    pipe = SamplePipeline(Recipe.from_config(cfg), cfg.seed)
    for i, r in enumerate(rows):
        ref = pipe(r["key"], {r["ext"]: r["data"], "json": r["json"]}, 1)
        assert out["key"][i] == r["key"]
        assert torch.equal(torch.from_numpy(out["tokens"][i]), ref["tokens"])
        assert np.array_equal(out["mask"][i], ref["mask"])


def write_dataset_with_a_corrupt_sample(root):
    """One real shard of 6 JPEG samples, the fourth one's bytes garbage, and its manifest."""
    import io as _io
    import json as _json

    from PIL import Image

    from conftest import photo_like
    from omnimask.io.formats import TarShardWriter
    from omnimask.io.manifest import Manifest, ShardInfo, file_sha256

    root.mkdir()
    g = np.random.default_rng(0)
    writer = TarShardWriter(root / "shard-000000.tar")
    for i in range(6):
        buf = _io.BytesIO()
        Image.fromarray(photo_like(g, 48, 48)).save(buf, format="JPEG")
        data = b"not a jpeg" if i == 3 else buf.getvalue()
        writer.add(f"{i:09d}", {"jpg": data, "json": _json.dumps({"key": f"{i:09d}"}).encode()})
    writer.close()
    path = root / "shard-000000.tar"
    Manifest("image", "webdataset", 6, 6, 0, [ShardInfo(path.name, 6, path.stat().st_size, file_sha256(path))]).save(root)


def test_a_sample_that_fails_to_decode_is_replaced_and_counted(tmp_path):
    write_dataset_with_a_corrupt_sample(tmp_path / "ds")
    r = recipe()
    outs = list(ShardStream(tmp_path / "ds", SamplePipeline(r, 0), batch_size=6, epochs=1))
    assert len(outs) == 6, "one output per stored sample"
    assert sum(o["replaced"] for o in outs) == 1
    i = next(i for i, o in enumerate(outs) if o["replaced"])
    neighbour = outs[i - 1] if i else outs[i + 1]
    assert outs[i]["key"] == neighbour["key"] != "000000003" and torch.equal(outs[i]["tokens"], neighbour["tokens"])
    batch = next(iter(build_loader(r, data=DataConfig(path=tmp_path / "ds", batch_size=6, num_workers=0), seed=0)))
    assert batch["replaced"] == 1 and len(batch["keys"]) == 6
    strict = ShardStream(tmp_path / "ds", SamplePipeline(r, 0, strict=True), batch_size=6, epochs=1)
    try:
        list(strict)
    except RuntimeError as e:
        assert "000000003" in str(e) and "shard-000000.tar" in str(e) and "data.strict" in str(e)
    else:
        raise AssertionError("data.strict did not fail on a corrupt sample")


def test_replace_failures_keeps_counts_even_when_the_stream_starts_bad():
    from omnimask.data.loader import Failure, SamplesFailed, replace_failures

    a, b, bad = {"key": "a"}, {"key": "b"}, Failure("k", "ValueError: broken")
    out = list(replace_failures(iter([bad, bad, a, bad, b])))
    assert [(o["key"], o["replaced"]) for o in out] == [("a", False), ("a", True), ("a", True), ("a", True), ("b", False)]
    # failures in a row end an endless stream instead of spinning (the count restarts after a good sample)
    assert len(list(replace_failures(iter([bad, bad, a, bad, bad, b]), max_failures=3))) == 6
    with pytest.raises(SamplesFailed, match=r"^ValueError: broken \(sample k; 3 samples in a row failed to load\)"):
        list(replace_failures(iter([a, *[bad] * 5]), max_failures=3))
    # before any sample has loaded, a few failures in a row end it: the recipe does not fit the data
    assert len(list(replace_failures(iter([bad, bad, a]), max_first=3))) == 3
    endless = (bad for _ in iter(int, 1))
    with pytest.raises(SamplesFailed, match=r"3 samples in a row failed to load \(every one so far\)"):
        list(replace_failures(endless, max_first=3))
    # a stream that ends before any sample loaded (a Ray Data batch of failures) drops nothing silently
    with pytest.raises(SamplesFailed, match=r"^ValueError: broken \(sample k; 2 samples in a row failed to load \(every one so far\)\)"):
        list(replace_failures(iter([bad, bad])))


def test_a_masker_that_fails_every_sample_stops_the_loader_at_once(image_dataset, caplog):
    """Tube masking on an image grid raises for every sample: the loader stops after a few samples with
    that reason, instead of replacing a thousand samples first."""
    recipe = Recipe.from_config(load_recipe("mae_image_tiny", ["model.masker.name=tube"]))
    loader = build_loader(recipe, data=DataConfig(path=image_dataset["shards"], batch_size=4, num_workers=0), seed=0)
    with pytest.raises(SamplesFailed, match=r"^ValueError: tube masking needs .*16 samples in a row failed to load \(every one so far\)"):
        next(iter(loader))
    assert caplog.text.count("replacing sample") <= 16


def test_verify_shards_refuses_a_modified_shard(image_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(image_dataset["shards"], copy)
    shard = copy / image_dataset["manifest"].shards[0].path
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01
    shard.write_bytes(bytes(data))
    r = recipe()
    assert keys_of(ShardStream(copy, SamplePipeline(r, 0), epochs=1))  # size unchanged: only the hash tells
    try:
        keys_of(ShardStream(copy, SamplePipeline(r, 0), batch_size=30, epochs=1, verify=True))
    except ValueError as e:
        assert shard.name in str(e) and "sha256" in str(e)
    else:
        raise AssertionError("a modified shard was read with verify=True")


def test_decoders_give_one_sample_per_view_seed():
    """``decode_views``: a decoder without ``views`` is called once per seed; one whose ``views`` returns
    another count breaks its contract (it would shift every later batch off its step)."""
    from omnimask.core.contracts import ContractError
    from omnimask.data.loader import decode_views

    class Short:
        def __call__(self, members, seed):
            return seed

        def views(self, members, seeds):
            return list(seeds[1:])

    assert decode_views(lambda members, seed: 2 * seed, {}, [1, 5]) == [2, 10]
    with pytest.raises(ContractError, match=r"Short\.views returned 1 samples for 2 seeds"):
        decode_views(Short(), {}, [1, 5])


def batch_keys(loader, n: int) -> list[list[str]]:
    it = iter(loader)
    return [list(next(it)["keys"]) for _ in range(n)]


def test_the_loader_owns_its_position_and_a_new_loader_continues_from_its_state(image_dataset):
    """``state_dict`` after 7 trained steps (whatever the loader prefetched) -> a loader of another layout
    (two ranks of batch 2 instead of one of 4) continues with exactly the samples of step 8 on."""
    one = build_loader(recipe(), data=DataConfig(path=image_dataset["shards"], batch_size=4, num_workers=0, shuffle_window=2), seed=0)
    trained = {"steps": 0}
    one.follow(lambda: trained["steps"])
    full = [k for batch in batch_keys(one, 12) for k in batch]  # read well ahead of training
    trained["steps"] = 7
    state = one.state_dict()
    assert state == {
        "loader": "torch",
        "world_size": 1,
        "num_workers": 0,
        "batch_size": 4,
        "max_tokens": None,
        "repeats": 1,
        "seed": 0,
        "epoch": 0,
        "offset": 28,
    }
    ranks = [
        build_loader(
            recipe(),
            data=DataConfig(path=image_dataset["shards"], batch_size=2, num_workers=0, shuffle_window=2),
            seed=0,
            rank=r,
            world_size=2,
        )
        for r in (0, 1)
    ]
    for r in ranks:
        r.load_state_dict(state, step=7)
    two = [batch_keys(r, 5) for r in ranks]
    merged = [k for step in range(5) for r in (0, 1) for k in two[r][step]]
    # the epoch has 30 samples: step 8 is padded with the epoch's first two, then epoch 1 begins
    assert merged[:2] == full[28:30] and merged[4:] == full[32:48]
    assert ranks[0].state_dict()["offset"] == 28  # nothing trained since the resume: still the same position


@pytest.mark.parametrize(
    "change,message",
    [
        ({"seed": 1}, "taken with seed=1, this run has 0.*every epoch's order is drawn from it"),
        ({"max_tokens": 4096}, "max_tokens=4096, this run has None.*counts batches of that budget"),
        ({"loader": "ray"}, "loader='ray', this run has 'torch'.*a count of batches"),
    ],
)
def test_a_resume_the_position_cannot_carry_over_to_is_refused(image_dataset, change, message):
    loader = build_loader(recipe(), data=DataConfig(path=image_dataset["shards"], batch_size=4, num_workers=0, shuffle_window=2), seed=0)
    with pytest.raises(ValueError, match=message):
        loader.load_state_dict({**loader.state_dict(), **change}, step=3)
    next(iter(loader))
    with pytest.raises(RuntimeError, match="after the loader started iterating"):
        loader.load_state_dict(loader.state_dict(), step=3)
