"""`omnimask preprocess` then `omnimask pretrain` through the real CLI, in subprocesses."""

import os
import subprocess

import torch
from PIL import Image

from conftest import OMNIMASK, logged_losses, make_image_folder
from conftest import run_cli as run


def test_preprocess_then_pretrain_through_the_cli(tmp_path):
    counts = make_image_folder(tmp_path / "raw", n_good=40, seed=11)
    out = run(["preprocess", "image", "--input", "raw", "--output", "shards", "--samples-per-shard", "16", "--num-cpus", "2"], tmp_path)
    assert f"{counts['total']} inputs -> {counts['good']} samples" in out.stdout
    assert f"{counts['bad']} quarantined" in out.stdout

    run(
        [
            "pretrain", "mae_image_tiny", "data.path=shards", "data.batch_size=8", "data.num_workers=1",
            "model.tokenizer.image_size=32", "model.encoder.depth=2", "trainer.max_steps=40",
            "trainer.log_every_n_steps=5", "trainer.checkpoint_every_n_steps=20", "optim.warmup_steps=5",
            "--name", "smoke",
        ],
        tmp_path,
    )
    run_dir = tmp_path / "runs" / "smoke"
    assert (run_dir / "config.yaml").is_file()
    ckpts = sorted(p.name for p in run_dir.glob("checkpoint-step*"))
    assert ckpts == ["checkpoint-step0000020", "checkpoint-step0000040"]
    state = torch.load(run_dir / "checkpoint-step0000040" / "checkpoint.ckpt", weights_only=True, map_location="cpu")
    assert state["global_step"] == 40
    assert any(k.startswith("model.encoder.") for k in state["state_dict"])
    assert any(k.startswith("model.head.") for k in state["state_dict"])
    assert state["optimizer_states"] and state["lr_schedulers"]
    assert state["omnimask_data"] == {"loader": "torch", "world_size": 1, "num_workers": 1, "batch_size": 8, "max_tokens": None, "repeats": 1,
                                      "seed": 0, "epoch": 8, "offset": 0}  # 40 samples, 5 steps of 8 an epoch: 40 steps = 8 epochs

    losses = logged_losses(run_dir)
    assert len(losses) >= 7
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    grid = Image.open(run_dir / "reconstruction.png")
    assert grid.size[0] > 3 * 32 and grid.size[1] > 32


def test_cli_reports_config_errors_clearly(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.run([*OMNIMASK, "pretrain", "mae_image_tiny", "data.batchsize=3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "data.batchsize: unknown key (did you mean 'batch_size'?)" in proc.stderr
    proc = subprocess.run([*OMNIMASK, "pretrain", "mae_image_tiny", "--print-config", "trainer.max_steps=3"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "max_steps: 3" in proc.stdout
    proc = subprocess.run([*OMNIMASK, "pretrain", "mae_image_tiny", "--print-config", "model.masker.ratoi=0.5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "model.masker.ratoi: unknown key (did you mean 'ratio'?)" in proc.stderr
    proc = subprocess.run([*OMNIMASK, "pretrain", "mae_image_tiny", "--resume"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "give its name (--name or run.name)" in proc.stderr
    (tmp_path / "raw").mkdir()
    proc = subprocess.run([*OMNIMASK, "preprocess", "image", "--input", "raw", "--output", "out", "--executor", "processes",
                           "--ray-address", "auto"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "it takes no ray_address" in proc.stderr and not (tmp_path / "out").exists()
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "mine.yaml").write_text("base: mae_image_tiny.yaml\n")
    proc = subprocess.run([*OMNIMASK, "submit", "mine.yaml", "data.batchsize=3", "--working-dir", "job", "--address",
                           "http://127.0.0.1:9"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "data.batchsize: unknown key" in proc.stderr  # checked here, found in --working-dir
    proc = subprocess.run([*OMNIMASK, "submit", "mae_image_tiny", "--resume", "--address", "http://127.0.0.1:9"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "give its name (--name or run.name)" in proc.stderr  # before anything is uploaded
