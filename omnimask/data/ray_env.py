"""Starting or joining Ray.

``ray_session(address)`` joins the cluster at ``address`` (or ``RAY_ADDRESS``)
or starts a local instance for the duration of the block, and stops only what
it started. A local instance is started with token auth off
(``RAY_AUTH_MODE=disabled``) unless the caller set the variable, so that it
does not write ``~/.ray/auth_token`` and change how later ``ray job submit``
calls authenticate; without Ray Train's preemption watcher
(``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0``, unless set), as nothing preempts
its one node; and its processes keep their temporary files in a folder
of the session's own, removed when it ends (:func:`instance_temp_dir`).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager, nullcontext
from typing import Iterator, Optional

import ray

from omnimask.data.scratch import MAX_PATH, run_scratch, temp_dir_for_processes

log = logging.getLogger(__name__)


@contextmanager
def ray_session(address: Optional[str] = None, num_cpus: Optional[int] = None) -> Iterator[None]:
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    with nullcontext() if address else instance_temp_dir():
        if address:
            ray.init(address=address, log_to_driver=True)
            log.info("joined the Ray cluster at %s", address)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # nothing drains or preempts the one node of a local instance; the watcher Ray Train starts to see it
            # coming logs an error-level warning about its own restart policy on every run (ray#53727)
            os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
            ray.init(num_cpus=num_cpus, include_dashboard=True, log_to_driver=True, configure_logging=False)
            log.info("started a local Ray instance with %s CPUs", ray.cluster_resources().get("CPU"))
        try:
            yield
        finally:
            ray.shutdown()


@contextmanager
def instance_temp_dir() -> Iterator[None]:
    """A temporary folder (``TMPDIR``) for the processes of a local Ray instance started inside the block,
    removed after it. Ray kills its dashboard at shutdown before Python's multiprocessing clean-up runs in it,
    which otherwise leaves a ``pymp-*`` folder in the system's temporary folder per run. Ray's session files
    stay where Ray puts them (:func:`~omnimask.data.scratch.temp_dir_for_processes`)."""
    with run_scratch("omnimask-ray-") as path:
        if len(str(path)) > MAX_PATH:  # multiprocessing's sockets would not fit below it
            yield
            return
        with temp_dir_for_processes(path):
            yield
