"""A run's temporary folder, which the run removes whatever way it ends.

Workers write temporary files: the local copy of the checkpoint they resume from,
rank 0's checkpoint staging folder, and Python multiprocessing's ``pymp-*`` folders
(one per DataLoader worker that passes tensors to its parent). Each is removed when
its process ends normally, but not when Ray kills the worker as a failed run is torn
down. So the driver makes one folder per run (:func:`run_scratch`), every worker puts
its temporary files inside it (:func:`use_scratch`), and the driver removes it when
the run ends, successful or not. On a multi-node cluster the driver removes its own
node's copy; a worker on another node removes its own folder when it ends normally.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

log = logging.getLogger("omnimask.train")


# multiprocessing puts AF_UNIX sockets two levels below the temporary folder (``pymp-XXXXXXXX/listener-XXXXXXXX``,
# 32 characters); Linux caps a socket path at 107 bytes, so a longer folder would break the DataLoader's workers
MAX_PATH = 107 - 32


@contextmanager
def run_scratch(prefix: str = "omnimask-") -> Iterator[Path]:
    """A fresh folder ``<temp>/<prefix>XXXXXXXX`` for one run, removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ray_temp_root() -> str:
    """The folder Ray puts its session files in (``<root>/ray``), read as Ray reads it: ``RAY_TMPDIR``, else
    ``TMPDIR`` on Linux, else ``/tmp``."""
    linux_tmpdir = os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None
    return os.environ.get("RAY_TMPDIR") or linux_tmpdir or "/tmp"


@contextmanager
def temp_dir_for_processes(path: "str | Path", this_process: bool = False) -> Iterator[None]:
    """Make ``path`` the temporary folder (``TMPDIR``) of the processes started from now on and, with
    ``this_process``, of this one too (``tempfile``); all restored on exit. Ray's session files stay where
    they were: ``RAY_TMPDIR``, which Ray reads before ``TMPDIR``, is set to the folder they went to before
    where it was unset."""
    saved_env = {name: os.environ.get(name) for name in ("TMPDIR", "RAY_TMPDIR")}
    saved_tempdir = tempfile.tempdir
    os.environ["RAY_TMPDIR"] = ray_temp_root()
    os.environ["TMPDIR"] = str(path)
    if this_process:
        tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def use_scratch(base: Path, rank: int) -> Iterator[Optional[Path]]:
    """Make ``base/r<R>`` this process's temporary folder (``tempfile`` and ``TMPDIR``, which processes it
    starts inherit) until exit, then remove it (and ``base`` once empty: on a node other than the driver's) and
    restore the previous setting. Yields the folder, or None (nothing changed) where its path is too long for the
    sockets multiprocessing makes below it, or cannot be made on this node."""
    path = Path(base) / f"r{rank}"
    try:
        if len(str(path)) > MAX_PATH:
            raise OSError(f"{len(str(path))} characters, more than multiprocessing's sockets allow below it")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.info("rank %d keeps its temporary files in %s, not in the run's folder %s: %s", rank, tempfile.gettempdir(), path, e)
        yield None
        return
    try:
        with temp_dir_for_processes(path, this_process=True):
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        try:
            path.parent.rmdir()  # the run's folder, once empty: the last rank out on a node other than the driver's
        except OSError:
            pass
