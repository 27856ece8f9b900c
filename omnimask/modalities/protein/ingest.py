"""Protein ingest: every FASTA record (plain or gzip) is an input; valid ones become samples."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from omnimask.modalities.base import EncodedSample, QuarantineError
from omnimask.modalities.protein.fasta import clean_sequence, iter_fasta, open_fasta


@dataclass
class ProteinIngestConfig:
    """Options of ``omnimask preprocess protein``."""

    unknown: Literal["quarantine", "map_to_x"] = "quarantine"
    """Sequences with characters outside the alphabet: quarantine them, or map those characters to X
    (the sample's ``mapped_to_x`` counts them)."""
    min_length: int = 1
    """Shorter sequences are quarantined."""
    max_length: Optional[int] = None
    """Longer sequences are quarantined (None: keep them; the loader crops a random window)."""

    def __post_init__(self) -> None:
        if self.min_length < 1:
            raise ValueError(f"min_length must be >= 1, got {self.min_length}")
        if self.max_length is not None and self.max_length < self.min_length:
            raise ValueError(f"max_length ({self.max_length}) must be >= min_length ({self.min_length})")


def encode_fasta(path: Path, opts: ProteinIngestConfig) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
    """``(record name, sample or reason)`` for each record of a FASTA file; the name is the record's
    1-based number and id (``12:sp|P69905|HBA_HUMAN``). The payload is the sequence as ASCII."""
    if path.stat().st_size == 0:
        raise QuarantineError("empty file")
    try:
        with open_fasta(path) as stream:
            for number, record in enumerate(iter_fasta(stream), start=1):
                name = f"{number}:{record.id}" if record.id else str(number)
                try:
                    seq, mapped = clean_sequence(record.sequence, opts.unknown)
                    if len(seq) < opts.min_length or (opts.max_length is not None and len(seq) > opts.max_length):
                        raise ValueError(f"length {len(seq)} outside [{opts.min_length}, {opts.max_length or 'inf'}]")
                except ValueError as e:
                    yield name, QuarantineError(str(e))
                    continue
                meta = {"id": record.id, "description": record.description, "length": len(seq), "mapped_to_x": mapped,
                        "line": record.line}
                yield name, EncodedSample("seq", seq.encode("ascii"), meta, digest=hashlib.sha1(seq.encode()).hexdigest(), size=len(seq))
    except UnicodeDecodeError as e:
        raise QuarantineError(f"not a text FASTA file: {e.reason} at byte {e.start}") from None
    except (OSError, EOFError) as e:  # a corrupt gzip stream
        raise QuarantineError(f"unreadable: {e}") from None
    except ValueError as e:
        raise QuarantineError(str(e)) from None
