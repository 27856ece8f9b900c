"""A plugin *modality* (tests/plugins/signals: 1-D signals, its own tokenizer and example inputs), installed
with ``pip install --target`` as a user would, found by entry point and checked by ``omnimask check-plugin``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OMNIMASK

HERE = Path(__file__).resolve().parent
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-index", "--no-build-isolation"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The test modality and the example plugin package, installed into a folder of their own. ``--no-index``:
    nothing may come from a package index (an unrelated ``omnimask`` lives there)."""
    site = tmp_path_factory.mktemp("site")
    for package in (HERE / "plugins" / "signals", HERE.parent / "examples" / "ringmask"):
        subprocess.run([*PIP, "--target", str(site), str(package)], check=True, capture_output=True, timeout=300)
    return site


def check_plugin(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(site))
    return subprocess.run([*OMNIMASK, "check-plugin", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_check_plugin_checks_a_plugin_modality_on_its_own_example_inputs(site, tmp_path):
    recipe = site / "omnimask_signals" / "signal_tiny.yaml"
    proc = check_plugin(site, tmp_path, "signal", "--kind", "modality", "--recipe", str(recipe))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loader: 6 generated samples tokenized, masked and targeted within the contract (layout (8,) x 8" in proc.stdout
    assert proc.stdout.rstrip().endswith("check-plugin OK")
    # its tokenizer by its entry-point name, and a built-in masker on the plugin's grid and others
    proc = check_plugin(site, tmp_path, "random", "--kind", "masker", "--recipe", str(recipe))
    assert proc.returncode == 0 and "on other grids [(4,), (9,), (16,)]" in proc.stdout, proc.stdout + proc.stderr


def test_a_plugin_modality_whose_window_does_not_fit_its_tokenizer_fails_the_check(site, tmp_path):
    """The check runs the real pipeline: a decoder/tokenizer disagreement is caught before any training."""
    recipe = site / "omnimask_signals" / "signal_tiny.yaml"
    proc = check_plugin(site, tmp_path, "signal", "--kind", "modality", "--recipe", str(recipe), "-p", "window=48")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "check-plugin FAILED: tokenizer 'signal_patches' (omnimask_signals.SignalTokenizer) returned tokens of shape [8, 6]; "
        "expected [N, 8]" in proc.stdout
    )


def test_the_example_plugin_installs_with_target_and_no_index(site):
    assert (site / "omnimask_ringmask" / "masks.py").is_file() and not (site / "omnimask").exists()
