"""Starting or joining Ray.

``ray_session(address)`` joins the cluster at ``address`` (or ``RAY_ADDRESS``)
or starts a local instance for the duration of the block, and stops only what
it started. A local instance is started with token auth off
(``RAY_AUTH_MODE=disabled``) unless the caller set the variable, so that it
does not write ``~/.ray/auth_token`` and change how later ``ray job submit``
calls authenticate.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator, Optional

import ray

log = logging.getLogger(__name__)


@contextmanager
def ray_session(address: Optional[str] = None, num_cpus: Optional[int] = None) -> Iterator[None]:
    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        log.info("joined the Ray cluster at %s", address)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=num_cpus, include_dashboard=True, log_to_driver=True, configure_logging=False)
        log.info("started a local Ray instance with %s CPUs", ray.cluster_resources().get("CPU"))
    try:
        yield
    finally:
        ray.shutdown()
