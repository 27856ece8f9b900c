"""A training run's folder: every file name in it, in one place.

Layout (``run.dir/NAME/``)::

    config.yaml                        the resolved recipe
    checkpoint-stepNNNNNNN/            Ray Train checkpoints (checkpoint.ckpt inside), newest trainer.keep_checkpoints
    metrics.csv, tensorboard/          per-step metrics (train/loss, train/lr)
    reconstruction.png                 original | masked | reconstruction for a few samples
    summary.json                       steps, first/last loss, time, the steps resumed/started at, per-rank weight digests
    trace-rank{R}.jsonl                with data.trace=true: step, rank, index, key of every sample
    .failed                            why a pretrain call failed: the error on its first line, then its traceback
    .start-step                        the step a pretrain call's first attempt started at

The driver (:mod:`omnimask.train.pretrain`), the workers and callbacks, ``omnimask export`` and the demo all
find these files through :class:`RunDir`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

CHECKPOINT_FILE = "checkpoint.ckpt"
"""The Lightning checkpoint inside each ``checkpoint-step*`` folder."""


def checkpoint_dir_name(step: int) -> str:
    """The folder of the checkpoint taken after ``step`` steps (zero-padded: names sort by step)."""
    return f"checkpoint-step{step:07d}"


@dataclass(frozen=True)
class RunDir:
    """The folder of one run, ``run.dir/NAME``."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def preview(self) -> Path:
        return self.path / "reconstruction.png"

    @property
    def failed_mark(self) -> Path:
        """Written when a pretrain call ends with an error: the error on one line, then its traceback."""
        return self.path / ".failed"

    @property
    def start_mark(self) -> Path:
        """The step a pretrain call's first attempt started at, written by its rank 0 (``summary.started_at_step``)."""
        return self.path / ".start-step"

    @property
    def injected_failure(self) -> Path:
        """``trainer.fail_at_step``'s record that it failed once (a retry must not fail again)."""
        return self.path / ".injected-failure"

    def trace(self, rank: int) -> Path:
        return self.path / f"trace-rank{rank}.jsonl"

    def checkpoints(self) -> list[Path]:
        """The checkpoint files in the run's folder, oldest first (none where ``run.storage`` keeps them elsewhere)."""
        return sorted(self.path.glob(f"checkpoint-step*/{CHECKPOINT_FILE}"))

    def read_summary(self) -> Optional[dict[str, Any]]:
        return json.loads(self.summary.read_text()) if self.summary.is_file() else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.summary.write_text(json.dumps(summary, indent=2))

    def mark_failed(self, line: str, details: str = "") -> None:
        self.failed_mark.write_text(f"{line}\n{details}")

    def clear_call_marks(self) -> None:
        """Remove what an earlier pretrain call wrote about itself: it must not pass for this call's."""
        for path in (self.summary, self.failed_mark, self.start_mark):
            path.unlink(missing_ok=True)

    def failed_before_checkpoint(self) -> bool:
        """Whether the run failed (its mark) without a summary or a checkpoint: starting it again loses nothing."""
        return self.failed_mark.exists() and not self.summary.exists() and not any(self.path.glob("checkpoint-step*"))
