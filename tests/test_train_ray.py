"""Pretraining on Ray Train with real workers: DDP over 2 ranks, failure recovery, resume."""

import csv
import json

import pytest

from conftest import logged_losses, make_image_folder
from omnimask.core.config import load_recipe
from omnimask.data.preprocess import preprocess
from omnimask.data.scratch import temp_dir_for_processes
from omnimask.train.failure import TrainingFailed
from omnimask.train.pretrain import RunExistsError, pretrain

TINY = [
    "model.tokenizer.image_size=32",
    "model.encoder.depth=1",
    "model.head.depth=1",
    "data.batch_size=4",
    "data.num_workers=1",
    "data.shuffle_window=2",
    "trainer.log_every_n_steps=2",
    "trainer.checkpoint_every_n_steps=4",
    "optim.warmup_steps=2",
    "trainer.preview_samples=2",
]


@pytest.fixture(scope="module")
def workers_tmp(tmp_path_factory):
    """The temporary folder (``TMPDIR``) of this module's Ray workers, set before its instance starts;
    Ray's own session files stay where they were (``RAY_TMPDIR``)."""
    path = tmp_path_factory.mktemp("workers-tmp")
    with temp_dir_for_processes(path, this_process=True):  # the driver's too: it makes the run's scratch folder
        yield path


@pytest.fixture(scope="module")
def shards(tmp_path_factory, workers_tmp, ray_local):
    root = tmp_path_factory.mktemp("train")
    make_image_folder(root / "raw", n_good=40, seed=5)  # 45 inputs: shards of 3, 8, 8, 8, 8, 5 samples
    preprocess("image", root / "raw", root / "shards", samples_per_shard=8)
    return root / "shards"


def train(shards, runs, name, *overrides, resume=False):
    cfg = load_recipe("mae_image_tiny", [*TINY, f"data.path={shards}", f"run.dir={runs}", *overrides])
    return pretrain(cfg, name=name, resume=resume)


def leftovers(tmp):
    """What runs left in a temporary folder: omnimask's folders and Python multiprocessing's."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("omnimask-", "pymp-")))


def assert_failed_by_the_drill(run_dir, step):
    """The run failed where ``trainer.fail_at_step`` made rank 0 raise: its marker says so, and it wrote no
    summary. (Ray wraps the worker's exception in a WorkerGroupError or, as it tears the workers down, at
    times in another error; the marker is the drill's own record.)"""
    assert (run_dir / ".injected-failure").read_text() == f"failure injected at step {step}\n"
    assert not (run_dir / "summary.json").exists()


def test_two_workers_read_disjoint_samples_and_keep_identical_weights(shards, tmp_path):
    """2 ranks, batch 3: an epoch of 40 samples (uneven shards) is 7 steps of 6 with 2 padded; the run
    goes on into the next epoch without a hang, and both ranks end with the same weights."""
    result = train(shards, tmp_path, "ddp", "scaling.num_workers=2", "data.batch_size=3", "trainer.max_steps=8", "data.trace=true")
    assert result.steps == 8 and result.summary["world_size"] == 2
    digests = result.summary["weights_digest_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    per_rank = {}
    for rank in (0, 1):
        lines = [json.loads(t) for t in (result.run_dir / f"trace-rank{rank}.jsonl").read_text().splitlines()]
        assert [t["step"] for t in lines] == [s for s in range(8) for _ in range(3)]
        assert all(t["rank"] == rank for t in lines) and [t["index"] for t in lines[:3]] == [0, 1, 2]
        per_rank[rank] = [t["key"] for t in lines[: 7 * 3]]  # epoch 0
    assert len(set(per_rank[0]) & set(per_rank[1])) == 2, "ranks share only the 2 padded samples"
    epoch = per_rank[0] + per_rank[1]
    assert len(set(epoch)) == 40 and len(epoch) == 42
    assert (result.run_dir / "checkpoint-step0000008" / "checkpoint.ckpt").is_file()


def test_failure_recovery_and_resume_continue_exactly(shards, tmp_path):
    """An uninterrupted run, a run that loses its worker at step 6 and recovers from the step-4
    checkpoint, and a run that stops at step 6 and is resumed: same final weights and loss."""
    plain = train(shards, tmp_path, "plain", "trainer.max_steps=8", "data.trace=true")
    recovered = train(
        shards, tmp_path, "recovered", "trainer.max_steps=8", "trainer.fail_at_step=6", "run.max_failures=1", "data.trace=true"
    )
    assert recovered.steps == 8 and recovered.summary["resumed_from_step"] == 4
    assert recovered.summary["started_at_step"] == 0  # the call started the run: the recovery is not a resume

    store = f"run.storage=file://{tmp_path / 'store'}"  # checkpoints through a pyarrow filesystem URI
    with pytest.raises(Exception):
        train(shards, tmp_path, "stopped", "trainer.max_steps=8", "trainer.fail_at_step=6", store)
    assert_failed_by_the_drill(tmp_path / "stopped", 6)
    with pytest.raises(RunExistsError, match="--resume"):
        train(shards, tmp_path, "stopped", "trainer.max_steps=8", store)
    resumed = train(shards, tmp_path, "stopped", "trainer.max_steps=8", store, resume=True)
    assert resumed.steps == 8 and resumed.summary["resumed_from_step"] == resumed.summary["started_at_step"] == 4
    assert (tmp_path / "store" / "stopped" / "checkpoint-step0000008" / "checkpoint.ckpt").is_file()

    assert consumed_keys(recovered.run_dir, 4) == consumed_keys(plain.run_dir)  # the same batches, in order
    assert plain.summary["weights_digest_per_rank"] == recovered.summary["weights_digest_per_rank"]
    assert plain.summary["weights_digest_per_rank"] == resumed.summary["weights_digest_per_rank"]
    assert plain.last_loss == recovered.last_loss == resumed.last_loss
    kept = sorted(p.name for p in plain.run_dir.glob("checkpoint-step*"))
    assert kept == ["checkpoint-step0000004", "checkpoint-step0000008"]


def test_a_run_that_failed_before_its_first_checkpoint_can_start_again(shards, tmp_path):
    """A run that fails at once (here: a masker that cannot mask an image grid) leaves its config but no
    checkpoint; the same name then starts afresh, the failed attempt's files kept beside it."""
    with pytest.raises(TrainingFailed, match=r"^rank 0: ValueError: tube masking needs a \(time, height, width\) token grid") as failed:
        train(shards, tmp_path, "again", "model.masker.name=tube", "trainer.max_steps=2")
    assert (tmp_path / "again" / "config.yaml").is_file()
    marker = (tmp_path / "again" / ".failed").read_text()  # the component's error first, then the worker's traceback
    assert marker.startswith(f"{failed.value}\n") and "Traceback (most recent call last)" in marker and "data/loader.py" in marker
    result = train(shards, tmp_path, "again", "trainer.max_steps=2")
    assert result.steps == 2 and result.summary["resumed_from_step"] is None
    [aside] = tmp_path.glob("again.failed-*")
    assert "name: tube" in (aside / "config.yaml").read_text()
    with pytest.raises(RunExistsError, match="--resume"):  # a finished run is not started again
        train(shards, tmp_path, "again", "trainer.max_steps=2")
    # through Ray Data tasks the same error comes first (Ray quotes the task's traceback; a batch of failures ends too)
    ray_loader = ("data.loader=ray", "scaling.cpus_per_worker=0.5")
    with pytest.raises(TrainingFailed, match=r"^rank 0: ValueError: tube masking needs a \(time, height, width\) token grid"):
        train(shards, tmp_path, "again-ray", "model.masker.name=tube", "trainer.max_steps=2", *ray_loader)


def test_ray_data_loader_shuffles_windows_of_shards_like_the_torch_loader(shards):
    """data.loader=ray reads ``data.shuffle_window`` shards together and emits their samples in the torch
    loader's seeded order (shards are cut from sorted inputs, so one shard's samples are mostly one class);
    every sample comes once an epoch."""
    from collections import Counter

    from omnimask.data.order import epoch_order
    from omnimask.data.ray_ingest import build_ray_dataset, read_window_rows, window_units
    from omnimask.io.formats import iter_shard
    from omnimask.io.manifest import Manifest

    cfg = load_recipe("mae_image_tiny", [*TINY, f"data.path={shards}", "data.loader=ray", "data.shuffle_window=3", "trainer.max_steps=2"])
    manifest = Manifest.load(shards)
    keys = [[key for key, _ in iter_shard(manifest.format, shards / s.path)] for s in manifest.shards]
    expected = [keys[s][j] for s, j in epoch_order([len(k) for k in keys], cfg.seed, 1, 3)]  # the torch loader's epoch 1
    units = window_units(cfg, shards, manifest, 1)  # what build_ray_dataset reads in epoch 1
    rows = [row for unit in units for row in read_window_rows(unit)]
    assert [r["key"] for r in rows] == expected and {r["epoch"] for r in rows} == {1} and len(units) == 2
    assert len({r["shard"] for r in rows[:8]}) > 1, "a batch mixes the window's shards"

    seen = Counter(map(str, build_ray_dataset(cfg, world_size=1).select_columns(["key"]).to_pandas()["key"]))
    assert set(seen) == {k for ks in keys for k in ks} and len(set(seen.values())) == 1 and min(seen.values()) >= 2


def test_ray_data_loader_checks_shard_sizes_and_with_verify_shards_their_digests(shards, tmp_path):
    import shutil

    from omnimask.data.ray_ingest import build_ray_dataset
    from omnimask.io.manifest import Manifest

    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    shard = copy / Manifest.load(copy).shards[1].path
    data = bytearray(shard.read_bytes())
    data[-700] ^= 0xFF  # inside the tar's zero padding: every reader still reads it, only the digest tells
    shard.write_bytes(bytes(data))

    def dataset(*overrides):
        return build_ray_dataset(
            load_recipe("mae_image_tiny", [*TINY, f"data.path={copy}", "data.loader=ray", "trainer.max_steps=2", *overrides]), world_size=1
        )

    assert dataset().count() >= 2 * 40  # the change goes unseen without verify_shards
    with pytest.raises(Exception, match=r"has sha256 [0-9a-f]{64}, the manifest says"):
        dataset("data.verify_shards=true").count()
    shard.write_bytes(bytes(data[:-512]))
    with pytest.raises(ValueError, match=r"bytes, the manifest says .*incomplete or was modified"):
        dataset()


def test_ray_data_loader_trains_on_two_workers(shards, tmp_path):
    """data.loader=ray: Ray Data tasks decode/tokenize/mask; two trainers at 0.5 CPU each on 2 CPUs. A run
    whose length is not a multiple of trainer.log_every_n_steps still logs its last step."""
    result = train(
        shards,
        tmp_path,
        "raydata",
        "data.loader=ray",
        "scaling.num_workers=2",
        "scaling.cpus_per_worker=0.5",
        "trainer.max_steps=3",
        "data.trace=true",
        "trainer.log_every_n_steps=2",
    )
    assert result.steps == 3 and len(logged_losses(result.run_dir)) == 2
    with open(result.run_dir / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")] == [1, 2]  # 0-based: steps 2 and 3
    digests = result.summary["weights_digest_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    for rank in (0, 1):
        lines = [json.loads(t) for t in (result.run_dir / f"trace-rank{rank}.jsonl").read_text().splitlines()]
        assert len(lines) == 12 and len({t["key"] for t in lines}) == 12


def consumed_keys(run_dir, resumed_from=None) -> list[str]:
    """Keys trained on, in (step, rank, index) order, from every rank's trace. For a resumed run: steps
    before the checkpoint from the first attempt, the rest from the last attempt that started at the
    checkpoint's step (a resumed run that failed and recovered starts there twice)."""
    lines = []
    for trace in sorted(run_dir.glob("trace-rank*.jsonl")):
        attempts, previous = [], None
        for line in map(json.loads, trace.read_text().splitlines()):
            if previous is None or line["step"] < previous or (line["step"] == previous and line["index"] == 0):
                attempts.append([])  # a new attempt starts at this step
            previous = line["step"]
            attempts[-1].append(line)
        lines += [t for t in attempts[0] if resumed_from is None or t["step"] < resumed_from]
        if resumed_from is not None:
            lines += next((a for a in reversed(attempts) if a[0]["step"] == resumed_from), [])
    return [t["key"] for t in sorted(lines, key=lambda t: (t["step"], t["rank"], t["index"]))]


@pytest.mark.parametrize("before,after,steps", [(2, 1, 6), (1, 2, 7)])
def test_elastic_resume_covers_the_epoch_exactly(shards, tmp_path, workers_tmp, before, after, steps, caplog):
    """Stop at step 6 (checkpoint at 4) with `before` ranks, resume with `after`, the resumed run failing
    once more at step 5 and recovering: the 40 samples of the epoch are each trained on exactly once
    (batch 4: 2 ranks take 8 a step, 1 rank 4). The workers that Ray ends when a run fails leave nothing
    in the temporary folder: no checkpoint copies, no multiprocessing folders."""
    name = f"elastic{before}{after}"
    common = [f"trainer.max_steps={steps}", "data.trace=true", "scaling.cpus_per_worker=0.5"]
    with pytest.raises(Exception):
        train(shards, tmp_path, name, f"scaling.num_workers={before}", "trainer.fail_at_step=5", *common)
    assert_failed_by_the_drill(tmp_path / name, 5)
    assert not leftovers(workers_tmp)
    (tmp_path / name / ".injected-failure").unlink()  # the drill fails once more, in the resumed run
    resumed = train(
        shards, tmp_path, name, f"scaling.num_workers={after}", "trainer.fail_at_step=5", "run.max_failures=1", *common, resume=True
    )
    assert (tmp_path / name / ".injected-failure").is_file() and not leftovers(workers_tmp)
    assert resumed.summary["resumed_from_step"] == 4 and resumed.summary["data_position"] == {"epoch": 1, "offset": 0}
    assert f"scaling.num_workers: {before} -> {after}" in caplog.text  # the resume says what it changes
    keys = consumed_keys(resumed.run_dir, 4)
    assert len(keys) == len(set(keys)) == 40


def test_trainer_leaves_out_rays_placement_group_cleaner(ray_local):
    """Ray Train 2.60's cleaner removes a live run's placement group when the State API misses an answer
    (omnimask.train.ray_trainer); the trainer omnimask runs keeps Ray's other callbacks."""
    import ray.train

    from omnimask.train.ray_trainer import Trainer

    names = [
        type(c).__name__
        for c in Trainer(lambda config: None, scaling_config=ray.train.ScalingConfig(num_workers=1))._create_default_callbacks()
    ]
    assert "PlacementGroupCleanerCallback" not in names and "BackendSetupCallback" in names
