"""``omnimask submit``: run ``omnimask pretrain`` as a Ray job and follow it.

Submits through the Jobs SDK to the cluster's dashboard address, streams the
job's logs to stdout and returns its final status. The entrypoint is the same
``omnimask pretrain ...`` command line you would run on the cluster, so the
cluster's Python environment must have omnimask installed, or ``--working-dir``
with a runtime environment must bring it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
import time
from typing import Any, Optional

log = logging.getLogger("omnimask.submit")

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
"""Environment variables the Jobs SDK prefers to the address it is given (as ``ray.init`` does)."""


class ClusterUnreachable(ConnectionError):
    """Nothing answers at the address given to ``omnimask submit`` (nothing listening, unknown host, ...)."""


def pretrain_entrypoint(config: str, overrides: list[str], name: Optional[str], extra: list[str]) -> str:
    args = ["omnimask", "pretrain", config, *overrides, *extra]
    if name:
        args += ["--name", name]
    return shlex.join(args)


def root_cause(e: BaseException) -> str:
    """The innermost exception of ``e``'s chain, as text: ``Connection refused`` rather than the restatements of
    the layers above it (requests, urllib3, Ray)."""
    while (inner := e.__cause__ or e.__context__) is not None:
        e = inner
    if isinstance(e, OSError) and e.errno and e.errno > 0:
        return os.strerror(e.errno)  # asyncio words a refused connection its own way ("Connect call failed ...")
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def connect(address: str) -> Any:
    """A Jobs SDK client for ``address``; raises :class:`ClusterUnreachable`, with the reason, when the cluster
    does not answer there (only then: other failures keep their traceback)."""
    from ray.exceptions import RpcError
    from ray.job_submission import JobSubmissionClient

    try:
        with address_variables_set_aside(address):
            return JobSubmissionClient(address)
    except (ConnectionError, RpcError) as e:  # a dashboard URL that does not answer; a GCS address that times out
        raise ClusterUnreachable(f"cannot reach the Ray cluster at {address}: {root_cause(e)}") from None


@contextlib.contextmanager
def address_variables_set_aside(address: str) -> Any:
    """Unset :data:`ADDRESS_VARIABLES` for the block, so that the Jobs SDK goes to ``address``: the one the
    user typed, where left in place a ``RAY_ADDRESS`` from another session would silently send the job to
    another cluster. Says so when it sets one aside."""
    aside = {name: os.environ.pop(name) for name in ADDRESS_VARIABLES if name in os.environ}
    for name, value in aside.items():
        if value != address:
            log.info("submitting to %s as asked, not to %s=%s", address, name, value)
    try:
        yield
    finally:
        os.environ.update(aside)


def submit_job(client: Any, retry_s: float = 90.0, **kwargs: Any) -> str:
    """``client.submit_job(**kwargs)``, retried while a freshly started head has no job agent yet."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return client.submit_job(**kwargs)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            log.info("the cluster's job agent is not up yet; retrying")
            time.sleep(2.0)


def submit(
    address: str,
    entrypoint: str,
    runtime_env: Optional[dict[str, Any]] = None,
    follow: bool = True,
    timeout_s: Optional[float] = None,
) -> tuple[str, str]:
    """Submit ``entrypoint``; with ``follow``, stream logs until it ends. Returns ``(job_id, status)``.
    Raises :class:`ClusterUnreachable` when the cluster does not answer, before submitting or after (then
    naming the job, which may still be running)."""
    import aiohttp
    import requests

    client = connect(address)
    job_id = submit_job(client, entrypoint=entrypoint, runtime_env=runtime_env or None)
    log.info("submitted job %s to %s: %s", job_id, address, entrypoint)
    try:
        return job_id, follow_job(client, job_id, timeout_s) if follow else job_status(client, job_id)
    # the SDK's HTTP requests and its log stream; not OSError as a whole: stdout closed by a pipe is not the cluster
    except (requests.RequestException, aiohttp.ClientError, ConnectionRefusedError, ConnectionResetError) as e:
        raise ClusterUnreachable(
            f"lost the connection to the Ray cluster at {address} after submitting job {job_id}: {root_cause(e)}. "
            f"The job may still be running: ray job status {job_id} --address {address}"
        ) from None


def job_status(client: Any, job_id: str) -> str:
    """The job's status as its bare name (``RUNNING``, ``SUCCEEDED``, ...)."""
    return str(client.get_job_status(job_id)).split(".")[-1]


def follow_job(client: Any, job_id: str, timeout_s: Optional[float] = None) -> str:
    """Stream the job's logs to stdout until it ends (stopping it after ``timeout_s``); returns its final status."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    async def stream() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        asyncio.run(asyncio.wait_for(stream(), timeout=timeout_s))
    except asyncio.TimeoutError:
        pass
    while True:  # the log stream can end a moment before the status turns final
        status = job_status(client, job_id)
        if status in TERMINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            log.error("job %s still %s after %.0fs; stopping it", job_id, status, timeout_s)
            client.stop_job(job_id)
            status = "STOPPED"
            break
        time.sleep(1.0)
    log.info("job %s %s", job_id, status)
    return status
