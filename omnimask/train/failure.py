"""A failed run's error, said first: the worker's own error on one line, not Ray's wrapper.

Ray Train ends a run whose worker raised with ``WorkerGroupError("Training failed due to worker
errors: ...")``, and an error in a loader worker reaches the training worker re-raised by torch's
DataLoader as a ``RuntimeError`` that quotes the original traceback. The component's message (a masker
that cannot mask this grid, a target of the wrong width) is then the last of a hundred lines.
:func:`training_failed` digs it out: ``rank 0: ValueError: tube masking needs ...``.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import Optional

_QUOTED_TRACEBACK = "Original Traceback (most recent call last):"  # how torch's DataLoader quotes a loader worker's error
_SAMPLES_FAILED = re.compile(r"^(?:[\w.]+\.)?SamplesFailed: (.*)$", re.MULTILINE)
"""The loader's report that samples failed (:class:`omnimask.data.loader.SamplesFailed`), whose message starts with
the sample's own error: found wherever it is quoted (torch's quote of a loader worker, a Ray Data task's traceback)."""


class TrainingFailed(RuntimeError):
    """A run ended by an error in one of its workers. ``str()`` is that error on one line
    (``rank 0: ValueError: ...``); ``details`` is the worker's traceback."""

    def __init__(self, line: str, details: str = ""):
        super().__init__(line)
        self.details = details
        self.run_dir: Optional[Path] = None
        """The failed run's folder, where :meth:`RunDir.mark_failed` keeps the line and the traceback."""

    def __reduce__(self):  # picklable with its details (Ray jobs pass errors between processes)
        return (type(self), (str(self), self.details))


def error_line(error: BaseException) -> str:
    """The error that started ``error``, on one line: a failed sample's own error where the loader reported one
    (:data:`_SAMPLES_FAILED`), the original of a loader worker's error that torch's DataLoader re-raised, else
    ``Type: message`` of ``error`` itself."""
    text = f"{type(error).__name__}: {error}"
    if _QUOTED_TRACEBACK in text:  # torch re-raised a loader worker's error: the original follows the quoted frames
        quoted = text.split(_QUOTED_TRACEBACK, 1)[1].splitlines()
        text = next((q for q in quoted if q.strip() and not q[0].isspace()), text)  # frames are indented
    reported = _SAMPLES_FAILED.search(text)
    return reported.group(1) if reported else text.splitlines()[0]


def training_failed(error: BaseException) -> BaseException:
    """``error`` as :class:`TrainingFailed` when it is Ray Train's report of failed workers (the lowest failed
    rank's error first), else ``error`` unchanged."""
    failures: Optional[dict[int, BaseException]] = getattr(error, "worker_failures", None)
    if not failures:
        return error
    rank = min(failures)
    worker_error = failures[rank]
    # Ray's own message quotes the worker's traceback (the exception it hands over lost its frames in transit)
    details = f"{error}\n\n{''.join(traceback.format_exception(worker_error))}"
    others = f" (and {len(failures) - 1} more rank(s))" if len(failures) > 1 else ""
    return TrainingFailed(f"rank {rank}: {error_line(worker_error)}{others}", details)


def describe(error: BaseException) -> tuple[str, str]:
    """A failed call's error as :meth:`RunDir.mark_failed` keeps it: one line, then the traceback."""
    if isinstance(error, TrainingFailed):
        return str(error), error.details
    return error_line(error), "".join(traceback.format_exception(error))
