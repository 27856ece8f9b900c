"""`omnimask preprocess` then `omnimask pretrain` through the real CLI, in subprocesses."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import torch
from PIL import Image

from conftest import OMNIMASK, logged_losses, make_image_folder
from conftest import run_cli as run
from omnimask.data.scratch import temp_dir_for_processes


def test_preprocess_then_pretrain_through_the_cli(tmp_path):
    counts = make_image_folder(tmp_path / "raw", n_good=40, seed=11)
    processes_tmp = Path(tempfile.mkdtemp(prefix="cli-"))  # TMPDIR of both runs and every process they start
    with temp_dir_for_processes(processes_tmp):
        out = run(["preprocess", "image", "--input", "raw", "--output", "shards", "--samples-per-shard", "16", "--num-cpus", "2"], tmp_path)
        assert f"{counts['total']} inputs -> {counts['good']} samples" in out.stdout
        assert f"{counts['bad']} quarantined" in out.stdout

        out = run(
            [
                "pretrain",
                "mae_image_tiny",
                "data.path=shards",
                "data.batch_size=8",
                "data.num_workers=1",
                "model.tokenizer.image_size=32",
                "model.encoder.depth=2",
                "trainer.max_steps=40",
                "trainer.log_every_n_steps=5",
                "trainer.checkpoint_every_n_steps=20",
                "optim.warmup_steps=5",
                "--name",
                "smoke",
            ],
            tmp_path,
        )
    # the local Ray instances (dashboard included), the training workers and their loader workers cleaned up;
    # torch's compile cache (torchinductor_<user>) is meant to outlive a run
    left = sorted(p.name for p in processes_tmp.iterdir() if not p.name.startswith("torchinductor_"))
    assert not left, left
    shutil.rmtree(processes_tmp)
    assert out.stdout.startswith("trained 40 steps in "), out.stdout
    assert "run smoke: masker random(ratio=0.75, count='keep'), target pixels, tokenizer image_patches" in out.stderr
    assert "PreemptionWatcher" not in out.stderr  # nothing preempts a local instance: no watcher, no warning about it
    run_dir = tmp_path / "runs" / "smoke"
    assert (run_dir / "config.yaml").is_file()
    ckpts = sorted(p.name for p in run_dir.glob("checkpoint-step*"))
    assert ckpts == ["checkpoint-step0000020", "checkpoint-step0000040"]
    state = torch.load(run_dir / "checkpoint-step0000040" / "checkpoint.ckpt", weights_only=True, map_location="cpu")
    assert state["global_step"] == 40
    assert any(k.startswith("model.encoder.") for k in state["state_dict"])
    assert any(k.startswith("model.head.") for k in state["state_dict"])
    assert state["optimizer_states"] and state["lr_schedulers"]
    assert state["omnimask_data"] == {
        "loader": "torch",
        "world_size": 1,
        "num_workers": 1,
        "batch_size": 8,
        "max_tokens": None,
        "repeats": 1,
        "seed": 0,
        "epoch": 8,
        "offset": 0,
    }  # 40 samples, 5 steps of 8 an epoch: 40 steps = 8 epochs

    losses = logged_losses(run_dir)
    assert len(losses) >= 7
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    grid = Image.open(run_dir / "reconstruction.png")
    assert grid.size[0] > 3 * 32 and grid.size[1] > 32

    # a resume keeps the run's saved config (32px images, 2 encoder blocks, ...): only what is given now changes
    out = run(["pretrain", "mae_image_tiny", "trainer.max_steps=50", "--name", "smoke", "--resume"], tmp_path)
    assert out.stdout.startswith("trained steps 41-50 (10 steps, resumed from step 40) in "), out.stdout
    assert "trainer.max_steps: 40 -> 50" in out.stderr and "image_size" not in out.stderr

    # a run whose worker fails ends with the component's own error (and where its traceback is), not Ray's wrapper
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    args = ["pretrain", "mae_image_tiny", "data.path=shards", "model.masker.name=tube", "model.encoder.depth=1", "--name", "broken"]
    proc = subprocess.run([*OMNIMASK, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "run broken: masker tube(ratio=0.9), target pixels" in proc.stderr  # the override, not the recipe's description
    *_, error, where = proc.stderr.strip().splitlines()
    assert error.startswith("omnimask pretrain: error: rank 0: ValueError: tube masking needs a (time, height, width) token grid"), error
    assert where.startswith("the worker's traceback: ") and where.endswith("broken/.failed"), where
    assert (tmp_path / "runs" / "broken" / ".failed").read_text().splitlines()[0] == error.removeprefix("omnimask pretrain: error: ")


def test_cli_reports_config_errors_clearly(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(
        [*OMNIMASK, "pretrain", "mae_image_tiny", "data.batchsize=3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "data.batchsize: unknown key (did you mean 'batch_size'?)" in proc.stderr
    proc = subprocess.run(
        [*OMNIMASK, "pretrain", "mae_image_tiny", "--print-config", "trainer.max_steps=3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "max_steps: 3" in proc.stdout
    proc = subprocess.run(
        [*OMNIMASK, "pretrain", "mae_image_tiny", "--print-config", "model.masker.ratoi=0.5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "model.masker.ratoi: unknown key (did you mean 'ratio'?)" in proc.stderr
    proc = subprocess.run(
        [*OMNIMASK, "pretrain", "mae_image_tiny", "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "give its name (--name or run.name)" in proc.stderr
    (tmp_path / "raw").mkdir()
    proc = subprocess.run(
        [*OMNIMASK, "preprocess", "image", "--input", "raw", "--output", "out", "--executor", "processes", "--ray-address", "auto"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "it takes no ray_address" in proc.stderr and not (tmp_path / "out").exists()
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "mine.yaml").write_text("base: mae_image_tiny.yaml\n")
    proc = subprocess.run(
        [*OMNIMASK, "submit", "mine.yaml", "data.batchsize=3", "--working-dir", "job", "--address", "http://127.0.0.1:9"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "data.batchsize: unknown key" in proc.stderr  # checked here, found in --working-dir
    proc = subprocess.run(
        [*OMNIMASK, "submit", "mae_image_tiny", "--resume", "--address", "http://127.0.0.1:9"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "give its name (--name or run.name)" in proc.stderr  # before anything is uploaded


def test_submit_to_an_address_where_nothing_listens_is_a_one_line_error(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(
        [*OMNIMASK, "submit", "mae_image_tiny", "--address", f"http://127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"omnimask submit: error: cannot reach the Ray cluster at http://127.0.0.1:{port}: Connection refused"
    )


def test_submit_sets_ray_address_variables_aside_only_while_it_connects(monkeypatch):
    """(test_jobs checks that the job then reaches --address with a dead RAY_ADDRESS set.)"""
    from omnimask.cli.submit import address_variables_set_aside

    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    with address_variables_set_aside("http://127.0.0.1:8265"):
        assert "RAY_ADDRESS" not in os.environ
    assert os.environ["RAY_ADDRESS"] == "http://10.0.0.1:8265" and "RAY_API_SERVER_ADDRESS" not in os.environ


def test_a_resumed_run_reports_the_steps_this_invocation_trained():
    from omnimask.cli.main import trained_steps

    assert trained_steps(40, 0) == "trained 40 steps"
    assert trained_steps(40, 20) == "trained steps 21-40 (20 steps, resumed from step 20)"
    assert trained_steps(40, 40) == "trained no steps (the run was already at step 40)"


def test_preprocess_that_quarantines_every_input_fails(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.fasta").write_text(">a\nMK123\n")
    (tmp_path / "raw" / "b.fasta").write_text("")
    (tmp_path / "raw" / "c.fasta").write_text(">c\nJJ!!\n")
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(
        [*OMNIMASK, "preprocess", "protein", "--input", "raw", "--output", "out", "--executor", "processes", "--num-cpus", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "3 inputs -> 0 samples in 0 webdataset shards (0.0 MB), 3 quarantined" in proc.stdout
    assert (
        "omnimask preprocess: error: out holds no samples: all 3 inputs were quarantined (the reasons are in out/quarantine.jsonl)"
    ) in proc.stderr
    assert len((tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()) == 3
