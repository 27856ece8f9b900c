"""Host-memory allocator settings for training processes.

glibc's ``malloc`` serves large blocks (a step's activations and gradients: megabytes each) with
``mmap`` and hands freed memory back to the kernel once the free space at the top of its heap passes a
threshold that it tunes itself. A training step frees most of what it allocated, so the next step
allocates it afresh and the kernel zeroes and maps every page again: for the tiny MAE on the CPU
thousands of page faults a step (``python -m benchmarks.lockstep`` counts them, with and without).
:func:`retain_freed_memory` makes the process keep freed memory for reuse instead, up to a limit, so
that steady-state steps fault no pages at all. The cost is that the process holds on to
memory it freed (no more than its own peak), which is what a training worker wants anyway.
"""

from __future__ import annotations

import ctypes
import logging
import platform
from typing import Optional

log = logging.getLogger("omnimask.allocator")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameters (glibc's ``malloc.h``)."""


def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def retain_freed_memory(limit_mb: int) -> bool:
    """Serve blocks of up to ``limit_mb`` MB from the reusable heap and keep up to ``limit_mb`` MB of
    freed memory at its top instead of returning it to the kernel (glibc ``mallopt``: ``M_MMAP_THRESHOLD``
    and ``M_TRIM_THRESHOLD``; setting either also stops glibc from tuning them itself). Process-wide, and
    inherited by processes forked afterwards (loader workers). ``limit_mb`` 0 leaves glibc's defaults.

    Returns whether the setting took effect: False with ``limit_mb`` 0 and where the C library is not
    glibc (macOS, musl), whose allocators manage freed memory their own way.
    """
    if limit_mb < 0:
        raise ValueError(f"limit_mb must be >= 0, got {limit_mb}")
    if limit_mb == 0:
        return False
    libc = _glibc()
    if libc is None:
        log.info("not glibc: leaving the C library's allocator settings as they are")
        return False
    value = min(limit_mb * 2**20, 2**31 - 1)  # mallopt takes an int
    return bool(libc.mallopt(M_MMAP_THRESHOLD, value)) and bool(libc.mallopt(M_TRIM_THRESHOLD, value))
