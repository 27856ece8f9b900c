"""FASTA reading and validation: one record per sample, each checked against the ESM alphabet."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from omnimask.modalities.protein.alphabet import SEQUENCE_CHARS


@dataclass(frozen=True)
class FastaRecord:
    """One ``>`` record: ``id`` (first word of the header), ``description`` (the rest), the sequence
    letters as written (line breaks and spaces removed), and the header's line number."""

    id: str
    description: str
    sequence: str
    line: int


def open_fasta(path: Path) -> io.TextIOBase:
    """A text stream over a plain or gzip-compressed FASTA file (gzip is recognised by its magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="ascii", errors="strict")


def iter_fasta(stream: io.TextIOBase) -> Iterator[FastaRecord]:
    """The records of a FASTA stream, in order. Text before the first ``>`` is an error (not FASTA)."""
    header: Optional[tuple[str, str, int]] = None
    parts: list[str] = []
    for number, line in enumerate(stream, start=1):
        line = line.strip()
        if line.startswith(">"):
            if header is not None:
                yield FastaRecord(header[0], header[1], "".join(parts), header[2])
            words = line[1:].strip().split(None, 1)
            header = (words[0] if words else "", words[1] if len(words) > 1 else "", number)
            parts = []
        elif line and not line.startswith(";"):
            if header is None:
                raise ValueError(f"line {number}: sequence data before the first '>' header (not a FASTA file?)")
            parts.append("".join(line.split()))
    if header is not None:
        yield FastaRecord(header[0], header[1], "".join(parts), header[2])


def clean_sequence(sequence: str, unknown: Literal["quarantine", "map_to_x"]) -> tuple[str, int]:
    """Upper-case ``sequence`` and check it against the alphabet. Returns the sequence and how many
    characters were mapped to ``X``; raises ValueError naming the bad characters with ``quarantine``.
    A trailing ``*`` (stop codon mark) is dropped."""
    seq = sequence.upper().rstrip("*")
    if not seq:
        raise ValueError("empty sequence")
    bad = sorted(set(seq) - SEQUENCE_CHARS)
    if not bad:
        return seq, 0
    if unknown == "quarantine":
        raise ValueError(f"characters outside the protein alphabet: {''.join(bad)!r}")
    mapped = sum(seq.count(c) for c in bad)
    return "".join(c if c in SEQUENCE_CHARS else "X" for c in seq), mapped
