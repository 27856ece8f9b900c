"""Logging set-up shared by the CLI and the Ray Train workers."""

from __future__ import annotations

import logging
import warnings


def setup_logging() -> None:
    """INFO lines with time and source; Lightning's start-up chatter and known harmless warnings off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero", "lightning_fabric", "ray.train"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")
