"""The benchmark suite runs end to end on tiny inputs (its figures are not asserted), and its plain-MAE
baseline computes omnimask's loss on the same weights and mask (what makes the step ratio a fair one)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(1200)  # ~4 min alone, ~6 min beside another test file (make test runs two at a time)
def test_benchmark_suite_quick_run_writes_every_section(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1140,
    )  # under pytest-timeout: the child dies with the test
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    sections = results["sections"]
    assert {r["modality"] for r in sections["preprocess"]} == {"image", "video", "audio", "pointcloud", "graph", "protein"}
    assert all(r["samples"] > 0 and r["speedup"] > 0 for r in sections["preprocess"])
    assert {r["modality"] for r in sections["loader"]} == {"image", "video", "audio", "pointcloud", "graph", "protein"}
    assert all(r["omnimask"] > 0 and r[r["reference"]] > 0 and r["workers"] == 1 for r in sections["loader"])
    video = next(r for r in sections["loader"] if r["modality"] == "video")
    assert video["repeats"] == 2 and video["omnimask-views"] > 0 and "(2 views)" in (tmp_path / "results.md").read_text()
    mae = next(r for r in sections["train"] if r.get("recipe") == "mae_image_tiny")
    turns = next(r["interleaved"] for r in sections["train"] if "interleaved" in r)
    assert turns["omnimask_step_ms"] > 0 and turns["plain_step_ms"] > 0 and turns["speedup"] > 0
    as_run = next(r["as_run"] for r in sections["train"] if "as_run" in r)["sides"]
    assert as_run["omnimask"]["retained"] and not as_run["plain"]["retained"]  # each process its own allocator setting
    assert as_run["plain"]["fused_adamw"] is False and as_run["plain_tuned"]["retained"]  # MAE's script; model vs model
    assert all(side["step_ms"] > 0 and side["gflop"] > 0 for side in as_run.values())
    assert mae["samples_per_s"] > 0 and mae["plain_samples_per_s"] > 0 and mae["peak_mb"] > 0
    assert abs(mae["equal_loss"]["omnimask"] - mae["equal_loss"]["plain"]) < 1e-4
    assert [(r["kind"], r.get("cpus", r.get("workers"))) for r in sections["scaling"]] == [
        ("preprocess", 1),
        ("preprocess", 2),
        ("train", 1),
        ("train", 2),
    ]
    assert {r["dtype"] for r in sections["micro"]} == {"float32", "bfloat16", "uint8", "bool"} and all(
        v > 0 for r in sections["micro"] for k, v in r.items() if k not in ("what", "dtype")
    )
    report = (tmp_path / "results.md").read_text()
    for heading in (
        "## Targets",
        "## Preprocessing",
        "## Loader",
        "## Training step",
        "## Scaling",
        "## Micro",
        "### The tiny MAE step read other ways",
    ):
        assert heading in report
    assert "tiny MAE step on the CPU, fp32, as omnimask pretrain runs it" in report and "model against model" in report


@pytest.mark.parametrize(
    "recipe, overrides",
    [
        *[(name, ()) for name in ("mae_image_tiny", "videomae_tiny", "audiomae_tiny", "pointmae_tiny", "esm_mlm_tiny", "graphmae_tiny")],
        # VideoMAE's ratio on a 4x4x4 grid: the tube masker leaves 4 x 2 tokens visible, MAE's int(64 x 0.1) would be 6
        ("videomae_tiny", ("model.masker.ratio=0.9",)),
    ],
)
def test_plain_reference_computes_the_same_loss_on_the_same_weights_and_mask(recipe, overrides):
    from benchmarks.train_step import equal_loss

    losses = equal_loss(recipe, overrides=overrides)
    assert losses["abs_diff"] < 1e-5 * max(1.0, abs(losses["omnimask"]))
    assert losses["omnimask"] > 0


@pytest.mark.parametrize("recipe", ["mae_image_tiny", "pointmae_tiny", "graphmae_tiny"])
def test_plain_reference_draws_its_own_mask_and_trains(recipe):
    """The baselines that mask inside the model really do: another draw, another loss; and a step's
    backward reaches every parameter their paper's code trains."""
    import torch

    from benchmarks.references import reference_for
    from benchmarks.train_step import build, real_batch

    torch.manual_seed(0)
    built = build(recipe, [])
    plain = reference_for(built, built.build_model())
    args = plain.args(real_batch(built, 4))
    a, b = plain(*args), plain(*args)
    assert torch.isfinite(a) and not torch.isclose(a, b)
    a.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in plain.parameters() if p.requires_grad)


def test_gpu_check_runs_its_code_on_the_cpu(tmp_path):
    """The GPU script is run rarely (a GPU is lent to some sessions only): its smoke mode keeps it working.
    Run as on a GPU image without Ray (an import of ray fails): it preprocesses on the local process pool."""
    (tmp_path / "no_ray" / "ray").mkdir(parents=True)
    (tmp_path / "no_ray" / "ray" / "__init__.py").write_text("raise ImportError('no ray on this image')\n")
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=os.pathsep.join([str(tmp_path / "no_ray"), str(ROOT)]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.gpu_check",
            "--device",
            "cpu",
            "--tiny",
            "--steps",
            "1",
            "--workers",
            "1",
            "--recipes",
            "mae_image",
            "videomae",
            "--repeats",
            "2",
            "--json",
            str(tmp_path / "g.json"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    row, video = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert row["recipe"] == "mae_image_tiny" and row["fed"]["samples_per_s"] > 0 and 0 <= row["fed"]["loader_share"] <= 1
    assert row["fed"]["replayed"]["samples_per_s"] > 0 and row["fed"]["replayed"]["batches"] == 1  # one fed step
    assert row["preprocess_executor"] == "processes" and row["repeats"] == 1
    assert video["recipe"] == "videomae_tiny" and video["repeats"] == 2 and video["fed"]["samples_per_s"] > 0
    assert row["compute_only"]["precision"] == "bf16" and row["plain_mae"]["impl"] == "plain"


def test_flop_count_of_fused_attention_equals_the_explicit_products():
    """The step's GFLOP column counts the CPU's fused attention kernel (torch's counter skips it) as the two
    matrix products it replaces, forward and backward, so that both sides of a ratio count the same work."""
    import torch
    import torch.nn.functional as F

    from benchmarks.train_step import step_gflop

    q, k, v = (torch.randn(2, 3, 17, 8, requires_grad=True) for _ in range(3))
    fused = step_gflop(lambda: F.scaled_dot_product_attention(q, k, v).sum())
    explicit = step_gflop(lambda: ((q @ k.transpose(-2, -1) * 8**-0.5).softmax(-1) @ v).sum())
    assert fused == explicit == 6 * 2 * (2 * 3 * 17 * 17 * 8) / 1e9


def test_attention_ab_times_both_attentions_on_the_same_step(monkeypatch):
    """The explicit product it swaps in computes what the fused kernel does, and the explicit side's step runs
    through it: once per block of the tiny MAE (4 encoder, 2 decoder) a step, after 3 warm-up steps."""
    import torch
    import torch.nn.functional as F

    import benchmarks.attention_ab as ab
    from omnimask.components.layers import attention, explicit_attention

    q, k, v = (torch.randn(2, 3, 17, 8) for _ in range(3))
    keep = torch.rand(2, 1, 1, 17) > 0.3
    keep[..., 0] = True
    assert torch.allclose(explicit_attention(q, k, v, keep), F.scaled_dot_product_attention(q, k, v, attn_mask=keep), atol=1e-5)
    calls = []
    monkeypatch.setattr(ab, "explicit_attention", lambda *a: calls.append(1) or explicit_attention(*a))
    ms = ab.main(steps=2, batch_size=4)
    assert set(ms) == {"fused", "explicit", "plain"} and all(t > 0 for t in ms.values())
    assert len(calls) == (3 + 2) * 6 and ab.layers.attention is attention  # the fused one is back in place


def test_lockstep_gives_up_on_a_side_that_stops_answering(tmp_path):
    import time

    from benchmarks.lockstep import read_reply

    with open(tmp_path / "err", "w+") as err:
        silent = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; print('said once', file=sys.stderr); time.sleep(60)"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        started = time.perf_counter()
        with pytest.raises(TimeoutError, match="'quiet' gave no reply in 2 s: said once"):
            read_reply(silent, "quiet", err, timeout=2)
    assert time.perf_counter() - started < 30 and silent.poll() is not None  # killed, not waited for
