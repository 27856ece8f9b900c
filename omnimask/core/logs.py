"""Logging set-up shared by the CLI and the Ray Train workers."""

from __future__ import annotations

import codecs
import io
import logging
import sys
import warnings
from typing import Optional

NAME_BYTES = "omnimask.name_bytes"
"""The error handler that writes a surrogate escape (a byte of a file name that is not UTF-8) as ``\\xNN``."""


def _name_bytes(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    bad = err.object[err.start : err.end]
    shown = "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c.encode("unicode_escape").decode() for c in bad)
    return shown, err.end


codecs.register_error(NAME_BYTES, _name_bytes)


def show_name_bytes() -> None:
    """Let stdout and stderr show the bytes of file names that are not UTF-8 as ``\\xNN`` (Linux names are
    bytes; Python holds such a name with surrogate escapes, which a strict stdout refuses to print)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=NAME_BYTES)


def setup_logging() -> None:
    """INFO lines with time and source; Lightning's start-up chatter and known harmless warnings off;
    file names that are not UTF-8 shown with their bytes escaped (:func:`show_name_bytes`)."""
    show_name_bytes()
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
