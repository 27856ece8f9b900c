"""Bounds on what one input may expand to in memory, shared by the modalities' ingests.

A small compressed input can unpack to gigabytes (a gzip FASTA of one 200 MB sequence, an ``.npz``
whose member inflates to a billion nodes, a FLAC of hours of silence). Each ingest checks its limits
before or while it decompresses, from declared sizes (headers, zip directories) and while streaming,
and quarantines an input over a limit with a reason made by :func:`over_limit`, which names the
option and how to raise it. The defaults are documented per modality in ``docs/modalities.md``.
"""

from __future__ import annotations

from omnimask.core.interfaces import QuarantineError


def over_limit(what: str, value: int | float | str, option: str, limit: int | float) -> QuarantineError:
    """The quarantine reason of an input whose ``what`` (``"sequence length"``) is ``value``, over the
    ingest option ``option`` = ``limit``; ``value`` may be a text such as ``"more than 100,000"``."""
    shown = f"{value:,}" if isinstance(value, int) else str(value)
    return QuarantineError(
        f"{what} {shown} exceeds {option}={limit:,} (a limit on what one input may expand to in memory; "
        f"raise it with `-o {option}=N`, or `-o {option}=null` for none)"
    )
