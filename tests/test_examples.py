"""The examples in ``examples/`` run as a user runs them, and do what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_mae_in_a_loop_trains():
    """A few steps of the plain-PyTorch MAE loop: every step prints a finite loss and the loss falls."""
    steps = 8
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "mae_in_a_loop.py"), "--steps", str(steps)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    losses = [float(v) for v in re.findall(r"^step +\d+ .* loss (\S+)$", done.stdout, re.MULTILINE)]
    assert len(losses) == steps, done.stdout
    assert "quarantined" in done.stdout  # the example inputs' broken files are set aside, not trained on
    # the 32 examples make two alternating batches of 16: compare pairs of steps, so both batches count
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.85 * first, losses
