"""The streaming loader over real shards: shapes, coverage and determinism."""

import torch

from omnimask.config import load_recipe
from omnimask.models.recipe import Recipe
from omnimask.pipelines.loader import SamplePipeline, ShardStream, build_loader

OVERRIDES = ["model.tokenizer.image_size=32", "model.encoder.depth=1", "model.head.depth=1"]


def recipe() -> Recipe:
    return Recipe.from_config(load_recipe("mae_image_tiny", OVERRIDES))


def keys_of(stream: ShardStream, epoch: int = 0) -> list[str]:
    return [key for _, (key, _) in stream.shuffled(epoch)]


def test_batches_have_the_collated_layout(image_dataset):
    r = recipe()
    loader = build_loader(r, image_dataset["shards"], batch_size=5, num_workers=2, seed=0, shuffle_buffer=8)
    batch = next(iter(loader))
    assert batch["tokens"].shape == (5, 16, 192) and batch["tokens"].dtype == torch.uint8
    assert batch["mask"].shape == (5, 16) and batch["mask"].dtype == torch.bool
    assert batch["num_hidden"] == 12 and (batch["mask"].sum(1) == 12).all()
    assert batch["target"].shape == (5, 12, 192) and batch["target"].dtype == torch.uint8
    assert torch.equal(batch["target"], batch["tokens"][batch["mask"]].view(5, 12, 192))
    assert len(batch["keys"]) == 5


def test_ranks_and_workers_split_an_epoch_without_overlap(image_dataset, monkeypatch):
    """2 ranks x 2 loader workers, and 5 consumers (more than shards): every sample once."""
    r = recipe()
    n = image_dataset["manifest"].num_samples
    for world, workers in ((2, 2), (5, 1), (1, 1)):
        seen = []
        for rank in range(world):
            for worker in range(workers):
                stream = ShardStream(image_dataset["shards"], SamplePipeline(r, 0), 0, 4, rank, world)
                monkeypatch.setattr(stream, "consumer", lambda rk=rank, w=worker: (rk * workers + w, world * workers))
                seen += keys_of(stream)
        assert len(seen) == len(set(seen)) == n, (world, workers)


def test_epoch_order_is_seeded(image_dataset):
    r = recipe()
    a = ShardStream(image_dataset["shards"], SamplePipeline(r, 0), seed=1, shuffle_buffer=6)
    b = ShardStream(image_dataset["shards"], SamplePipeline(r, 0), seed=1, shuffle_buffer=6)
    c = ShardStream(image_dataset["shards"], SamplePipeline(r, 0), seed=2, shuffle_buffer=6)
    assert keys_of(a, 0) == keys_of(b, 0)
    assert keys_of(a, 0) != keys_of(a, 1)
    assert keys_of(a, 0) != keys_of(c, 0)
    assert sorted(keys_of(a, 0)) == sorted(keys_of(c, 0))


def test_augmentation_and_mask_depend_on_sample_not_worker(image_dataset):
    r = recipe()
    pipe = SamplePipeline(r, seed=5)
    stream = ShardStream(image_dataset["shards"], pipe, seed=5, epochs=1)
    first = {s["key"]: s for s in stream}
    other = SamplePipeline(r, seed=5)
    raw = dict((k, m) for _, (k, m) in stream.raw_samples(0))
    for key in list(first)[:6]:
        again = other(key, raw[key], 0)
        assert torch.equal(again["tokens"], first[key]["tokens"])
        assert torch.equal(again["mask"], first[key]["mask"])
    # a new epoch gives a new crop and mask
    key = next(iter(first))
    later = other(key, raw[key], 1)
    assert not torch.equal(later["mask"], first[key]["mask"]) or not torch.equal(later["tokens"], first[key]["tokens"])


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

    import numpy as np

    from omnimask.config import to_dict
    from omnimask.pipelines.ray_ingest import read_shard_rows, run_pipeline

    cfg = load_recipe("mae_image_tiny", OVERRIDES)
    m = image_dataset["manifest"]
    rows = read_shard_rows({"epoch": 1, "shard": str(image_dataset["shards"] / m.shards[0].path), "format": m.format})
    batch = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    out = run_pipeline(batch, recipe_json=_json.dumps(to_dict(cfg)))
    assert out["tokens"].dtype == np.uint8 and out["mask"].dtype == np.bool_ and out["target"].dtype == np.uint8
    pipe = SamplePipeline(Recipe.from_config(cfg), cfg.seed)
    for i, r in enumerate(rows):
        ref = pipe(r["key"], {r["ext"]: r["data"], "json": r["json"]}, 1)
        assert out["key"][i] == r["key"]
        assert torch.equal(torch.from_numpy(out["tokens"][i]), ref["tokens"])
        assert torch.equal(torch.from_numpy(out["mask"][i]), ref["mask"])
        assert torch.equal(torch.from_numpy(out["target"][i]), ref["target"])


def test_no_shuffle_buffer_streams_in_shard_order(image_dataset):
    r = recipe()
    stream = ShardStream(image_dataset["shards"], SamplePipeline(r, 0), seed=0, shuffle_buffer=0)
    keys = keys_of(stream)
    assert len(keys) == image_dataset["manifest"].num_samples
    raw = [key for _, (key, _) in stream.raw_samples(0)]
    assert keys == raw


def write_dataset_with_a_corrupt_sample(root):
    """One real shard of 6 JPEG samples, the fourth one's bytes garbage, and its manifest."""
    import io as _io
    import json as _json

    import numpy as np
    from PIL import Image

    from conftest import photo_like
    from omnimask.pipelines.formats import TarShardWriter
    from omnimask.pipelines.manifest import Manifest, ShardInfo, file_sha256

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
    outs = list(ShardStream(tmp_path / "ds", SamplePipeline(r, 0), shuffle_buffer=0, epochs=1))
    assert len(outs) == 6, "one output per stored sample"
    assert [o["replaced"] for o in outs] == [False, False, False, True, False, False]
    assert outs[3]["key"] == outs[2]["key"] and torch.equal(outs[3]["tokens"], outs[2]["tokens"])
    batch = next(iter(build_loader(r, tmp_path / "ds", batch_size=6, num_workers=0, seed=0, shuffle_buffer=0)))
    assert batch["replaced"] == 1 and len(batch["keys"]) == 6
    strict = ShardStream(tmp_path / "ds", SamplePipeline(r, 0, strict=True), shuffle_buffer=0, epochs=1)
    try:
        list(strict)
    except RuntimeError as e:
        assert "000000003" in str(e) and "shard-000000.tar" in str(e) and "data.strict" in str(e)
    else:
        raise AssertionError("data.strict did not fail on a corrupt sample")


def test_replace_failures_keeps_counts_even_when_the_stream_starts_bad():
    from omnimask.pipelines.loader import replace_failures

    a, b = {"key": "a"}, {"key": "b"}
    out = list(replace_failures(iter([None, None, a, None, b])))
    assert [(o["key"], o["replaced"]) for o in out] == [("a", False), ("a", True), ("a", True), ("a", True), ("b", False)]


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
        keys_of(ShardStream(copy, SamplePipeline(r, 0), epochs=1, verify=True))
    except ValueError as e:
        assert shard.name in str(e) and "sha256" in str(e)
    else:
        raise AssertionError("a modified shard was read with verify=True")
