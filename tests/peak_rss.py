"""Peak memory of a piece of work, measured in a fresh Python process (tests of bounded ingest memory)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_PROBE = """
import json, resource
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
{body}
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("PEAK_RSS " + json.dumps({{"before": before * 1024, "after": after * 1024}}))
"""


def peak_rss_growth(*, setup: str, body: str, timeout: float = 300) -> int:
    """Bytes by which the peak RSS of a fresh interpreter grew while running ``body`` (after ``setup``,
    which imports what ``body`` needs so that imports do not count). Raises with the child's output on failure."""
    code = _PROBE.format(setup=textwrap.dedent(setup), body=textwrap.dedent(body))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEAK_RSS ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"probe failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    figures = json.loads(lines[-1].split(" ", 1)[1])
    return figures["after"] - figures["before"]
