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
_WRAPPERS = re.compile(r"^(?:[\w.]+\.)?SamplesFailed: ")  # the loader's own wrapper (data.loader): its message starts with the cause


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
    """``Type: message`` of the error that started ``error``, on one line: the original of a loader worker's
    error that torch's DataLoader re-raised, the cause Ray keeps of a task's error, else ``error`` itself."""
    cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError: the task's own exception
    if isinstance(cause, BaseException) and cause is not error:
        return error_line(cause)
    text = str(error)
    if _QUOTED_TRACEBACK in text:
        quoted = text.split(_QUOTED_TRACEBACK, 1)[1].splitlines()
        line = next((q for q in quoted if q.strip() and not q[0].isspace()), None)  # frames are indented
        if line is not None:
            return _WRAPPERS.sub("", line)
    line = f"{type(error).__name__}: {text}".splitlines()[0] if text else type(error).__name__
    return _WRAPPERS.sub("", line)


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
