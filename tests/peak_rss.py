"""Peak memory of a piece of work, measured in a fresh Python process (tests of bounded ingest memory)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# The peak is the process's own VmHWM, reset after the set-up through /proc/self/clear_refs ("5": the
# peak RSS back to the current RSS, Linux 4.0+). Not ru_maxrss: a process spawned by vfork (as Python
# spawns) starts with its parent's peak in it, which would hide any growth below the test process's peak.
_PROBE = """
import json
{setup}
def _status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = _status("VmRSS")
{body}
print("PEAK_RSS " + json.dumps({{"before": before, "after": _status("VmHWM")}}))
"""


def peak_rss_growth(*, setup: str, body: str, timeout: float = 300) -> int:
    """Bytes by which the peak RSS of a fresh interpreter grew while running ``body`` (after ``setup``,
    which imports what ``body`` needs so that imports do not count). Raises with the child's output on failure."""
    code = _PROBE.format(setup=textwrap.dedent(setup), body=textwrap.dedent(body))
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEAK_RSS ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"probe failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    figures = json.loads(lines[-1].split(" ", 1)[1])
    return figures["after"] - figures["before"]
