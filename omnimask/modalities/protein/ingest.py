"""Protein ingest: every FASTA record (plain or gzip) is an input; valid ones become samples."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from omnimask.core.interfaces import EncodedSample, QuarantineError
from omnimask.core.limits import over_limit
from omnimask.modalities.protein.fasta import FastaRecord, clean_sequence, iter_fasta, not_ascii_reason, open_fasta, readable

MAX_LENGTH = 100_000
"""Default ``max_length``: about 3x titin (34,350 residues, the longest known protein), above the longest
UniRef50/90 entries (~35-45k); ESM-2 trains on crops of 1024. A longer "sequence" is a concatenation,
a genome read as protein, or a decompression bomb; the limit is also what bounds the memory one record
takes while it is read."""


@dataclass
class ProteinIngestConfig:
    """Options of ``omnimask preprocess protein``."""

    unknown: Literal["quarantine", "map_to_x"] = "quarantine"
    """Sequences with characters outside the alphabet: quarantine them, or map those characters to X
    (the sample's ``mapped_to_x`` counts them)."""
    min_length: int = 1
    """Shorter sequences are quarantined."""
    max_length: Optional[int] = MAX_LENGTH
    """Longer sequences are quarantined, dropped as soon as they are over: this bounds one record's memory (null: no limit)."""

    def __post_init__(self) -> None:
        if self.min_length < 1:
            raise ValueError(f"min_length must be >= 1, got {self.min_length}")
        if self.max_length is not None and self.max_length < self.min_length:
            raise ValueError(f"max_length ({self.max_length}) must be >= min_length ({self.min_length})")


def encode_fasta(path: Path, opts: ProteinIngestConfig) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
    """``(record name, sample or reason)`` for each record of a FASTA file; the name is the record's
    1-based number and id (``12:sp|P69905|HBA_HUMAN``; bytes that are not ASCII shown as ``\\xNN``).
    The payload is the sequence as ASCII.

    A bad record is quarantined alone, the rest of the file kept: an empty sequence, characters
    outside the alphabet, a length outside the limits, or a byte that is not ASCII in its header or
    sequence (always quarantined, also with ``unknown=map_to_x``; the reason names the record and the
    line). A record longer than ``max_length`` is dropped by the reader as soon as it is over, never
    held: the file is read a chunk at a time, and memory per record is bounded by a small multiple of
    ``max_length`` characters, whatever the size of the file or of one of its lines. The whole file is
    refused (QuarantineError) only when it is not FASTA text: empty, a corrupt gzip stream, binary
    data (a NUL byte near its start), text before the first ``>`` header, or no record at all. A gzip stream that
    breaks part-way raises after the records read before it."""
    if path.stat().st_size == 0:
        raise QuarantineError("empty file")
    try:
        with open_fasta(path) as stream:
            number = 0
            for number, record in enumerate(iter_fasta(stream, max_letters=_max_letters(opts)), start=1):
                yield record_name(record, number), encode_record(record, number, opts)
            if number == 0:
                raise ValueError("no FASTA records (no line starts with '>')")
    except (OSError, EOFError, zlib.error) as e:  # a corrupt or truncated gzip stream
        raise QuarantineError(f"unreadable: {e}") from None
    except ValueError as e:
        raise QuarantineError(str(e)) from None


def _max_letters(opts: ProteinIngestConfig) -> int | None:
    """Letters a record may hold while it is read: ``max_length`` and room for a trailing stop mark ``*``,
    which :func:`clean_sequence` drops (over that the record is surely too long; up to it, the exact
    length is checked after cleaning)."""
    return None if opts.max_length is None else opts.max_length + 1


def record_name(record: FastaRecord, number: int) -> str:
    """``number:id`` (``number`` alone for a record without an id), printable ASCII."""
    return f"{number}:{readable(record.id)}" if record.id else str(number)


def encode_record(record: FastaRecord, number: int, opts: ProteinIngestConfig) -> EncodedSample | QuarantineError:
    """The sample of ``record`` (the ``number``-th of its file), or the reason it is quarantined."""
    if record.not_ascii is not None:
        return QuarantineError(not_ascii_reason(record, number))
    if record.too_long:
        assert opts.max_length is not None
        return over_limit("sequence length", f"more than {opts.max_length:,}", "max_length", opts.max_length)
    try:
        seq, mapped = clean_sequence(record.sequence, opts.unknown)
    except ValueError as e:
        return QuarantineError(str(e))
    if opts.max_length is not None and len(seq) > opts.max_length:
        return over_limit("sequence length", len(seq), "max_length", opts.max_length)
    if len(seq) < opts.min_length:
        return QuarantineError(f"length {len(seq)} below min_length={opts.min_length}")
    meta = {"id": record.id, "description": record.description, "length": len(seq), "mapped_to_x": mapped, "line": record.line}
    if record.header_cut:
        meta["header_cut"] = True  # the description is the first HEADER_LIMIT characters of the header
    return EncodedSample("seq", seq.encode("ascii"), meta, digest=hashlib.sha1(seq.encode()).hexdigest(), size=len(seq))
