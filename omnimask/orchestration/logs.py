"""Logging set-up shared by the CLI and the Ray Train workers."""

from __future__ import annotations

import logging
import warnings
from typing import Optional


def setup_logging() -> None:
    """INFO lines with time and source; Lightning's start-up chatter and known harmless warnings off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric", "ray.train"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:  # Ray Train V2 logs every report at INFO under a logger named after its file path
        from ray.train.v2._internal.execution import context as train_context

        logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    except ImportError:
        pass
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")


def format_loss(value: Optional[float]) -> str:
    """A loss for a summary line; ``n/a`` when no step ran (e.g. resuming a finished run)."""
    return "n/a" if value is None else f"{value:.4f}"
