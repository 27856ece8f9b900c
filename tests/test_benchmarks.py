"""The benchmark scripts run end to end on tiny inputs (their figures are not asserted)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env, capture_output=True,
                          text=True, timeout=540)  # under pytest-timeout (600 s), so that the child is killed with the test
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_loader_benchmark_runs(tmp_path):
    out = run("loader_image.py", "--images", "48", "--batches", "2", "--batch-size", "8", "--workers", "1",
              "--json", str(tmp_path / "r.json"))
    assert "workers=1: imagefolder" in out and (tmp_path / "r.json").is_file()


def test_media_loader_benchmark_runs(tmp_path):
    out = run("loader_media.py", "--clips", "6", "--seconds", "2", "--batches", "1", "--batch-size", "2", "--workers", "1",
              "--json", str(tmp_path / "m.json"))
    assert "video workers=1: decode-all" in out and "audio workers=1: load+fbank" in out and (tmp_path / "m.json").is_file()
    assert "pointcloud workers=1: read+group" in out
    assert "graph workers=1: read+mask" in out and "nodes/s" in out
    assert "protein workers=1: in-memory" in out and "residues/s" in out


def test_preprocess_scaling_benchmark_runs():
    out = run("preprocess_scaling.py", "--images", "40", "--cpus", "1", "2", "--samples-per-shard", "10")
    assert "cpus=1:" in out and "cpus=2:" in out and "speed-up 1 -> 2 CPUs" in out
