"""FASTA reading and validation: one record per sample, each checked against the ESM alphabet.

FASTA is ASCII text. A byte that is not ASCII spoils only the record it is in: the stream decodes
such bytes with ``surrogateescape`` (the all-ASCII path is the plain ASCII decoder, at its speed), and
the record notes the first one (:attr:`FastaRecord.not_ascii`) for the ingest to quarantine it alone.
A whole file is refused only when it is not FASTA text at all: see :func:`open_fasta` (binary data)
and :func:`iter_fasta` (text before the first header).
"""

from __future__ import annotations

import codecs
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from omnimask.modalities.protein.alphabet import SEQUENCE_CHARS

GZIP_MAGIC = b"\x1f\x8b"
BINARY_SNIFF_BYTES = 8000
"""A NUL byte among a file's first (decompressed) bytes, up to this many, marks it binary (git's test)."""
HEADER_SHOWN = 80
"""Characters of a header that a quarantine reason shows."""


@dataclass(frozen=True)
class FastaRecord:
    """One ``>`` record: ``id`` (first word of the header), ``description`` (the rest), the sequence
    letters as written (line breaks and spaces removed), and the header's line number.

    ``not_ascii`` is ``(line number, byte value)`` of the record's first byte that is not ASCII (in its
    header or its sequence lines), or None; such bytes stay in the strings as ``surrogateescape``
    surrogates (:func:`readable` shows them as ``\\xNN``)."""

    id: str
    description: str
    sequence: str
    line: int
    not_ascii: Optional[tuple[int, int]] = None

    @property
    def header(self) -> str:
        """The header line as printable ASCII (``>id description``, bad bytes as ``\\xNN``)."""
        return readable(f">{self.id} {self.description}".rstrip())


def readable(text: str) -> str:
    """``text`` with every character that is not ASCII shown as the ``\\xNN`` escapes of its bytes
    (a ``surrogateescape`` surrogate as the byte it stands for). ASCII text is returned as it is."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")


def first_non_ascii_byte(text: str) -> int:
    """The value of the first byte of ``text`` (as read, see :func:`readable`) that is not ASCII."""
    return next(b for b in text.encode("utf-8", "surrogateescape") if b >= 0x80)


def open_fasta(path: Path) -> io.TextIOBase:
    """A text stream over a plain or gzip-compressed FASTA file (gzip is recognised by its magic bytes).

    Bytes that are not ASCII are decoded as ``surrogateescape`` surrogates, never an error: they are
    the concern of the record they are in. A UTF-8 byte-order mark at the start (as Windows editors write)
    is skipped. Raises ValueError for a binary file, one with a NUL byte among its first
    :data:`BINARY_SNIFF_BYTES` (decompressed) bytes, and OSError for a corrupt gzip header."""
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")
    try:
        head = raw.peek(BINARY_SNIFF_BYTES)[:BINARY_SNIFF_BYTES]
        if b"\0" in head:
            raise ValueError(f"binary data or UTF-16 (a NUL byte in the first {BINARY_SNIFF_BYTES} bytes): not an ASCII FASTA file")
        if head.startswith(codecs.BOM_UTF8):
            raw.read(len(codecs.BOM_UTF8))
    except BaseException:
        raw.close()
        raise
    return io.TextIOWrapper(raw, encoding="ascii", errors="surrogateescape")


def iter_fasta(stream: io.TextIOBase) -> Iterator[FastaRecord]:
    """The records of a FASTA stream, in order. Blank lines and ``;`` comment lines are skipped.

    Raises ValueError when a line other than those comes before the first ``>`` header: the stream
    is not FASTA (or not text). Bytes that are not ASCII elsewhere do not raise: the record holding
    them says where the first one is (:attr:`FastaRecord.not_ascii`)."""
    header: Optional[tuple[str, str, int]] = None
    parts: list[str] = []  # per line after the header, as read ("" for a blank or comment line)
    for number, line in enumerate(stream, start=1):
        line = line.strip()
        if line.startswith(">"):
            if header is not None:
                yield _record(header, parts)
            words = line[1:].split(None, 1)
            header = (words[0] if words else "", words[1] if len(words) > 1 else "", number)
            parts = []
        elif line and not line.startswith(";"):
            if header is None:
                raise ValueError(_before_first_header(line, number))
            parts.append(line)
        else:
            parts.append("")  # keeps parts[i] the line header + 1 + i
    if header is not None:
        yield _record(header, parts)


def _record(header: tuple[str, str, int], parts: list[str]) -> FastaRecord:
    """The record of ``header`` (id, description, line number) and the ``parts`` of the lines after it.
    Spaces are removed and bytes that are not ASCII looked for once per record, not per line (a
    sequence without spaces is not copied by ``split``, and ``str.isascii`` costs nothing)."""
    ident, description, line = header
    sequence = "".join("".join(parts).split())
    if sequence.isascii() and ident.isascii() and description.isascii():
        return FastaRecord(ident, description, sequence, line)
    return FastaRecord(ident, description, sequence, line, _first_non_ascii(header, parts))


def _first_non_ascii(header: tuple[str, str, int], parts: list[str]) -> tuple[int, int]:
    """``(line number, byte value)`` of the first byte that is not ASCII in a record that has one."""
    ident, description, line = header
    if not (ident + description).isascii():
        return line, first_non_ascii_byte(ident + description)
    i = next(i for i, part in enumerate(parts) if not part.isascii())
    return line + 1 + i, first_non_ascii_byte(parts[i])


def _before_first_header(line: str, number: int) -> str:
    """Why a stream whose ``line`` comes before any ``>`` header is not FASTA."""
    if line.isascii():
        return f"line {number}: sequence data before the first '>' header (not a FASTA file?)"
    byte = first_non_ascii_byte(line)
    return f"line {number}: bytes that are not ASCII text (0x{byte:02x}) before the first '>' header: not a text FASTA file"


def not_ascii_reason(record: FastaRecord, number: int) -> str:
    """Why ``record``, the ``number``-th of its file, is quarantined when it holds a byte that is not
    ASCII: the byte, its line, the part of the record, and the record (number and readable header)."""
    assert record.not_ascii is not None
    line, byte = record.not_ascii
    part = "header" if line == record.line else "sequence"
    header = record.header
    if len(header) > HEADER_SHOWN:
        header = header[: HEADER_SHOWN - 3] + "..."
    return f"not ASCII text: byte 0x{byte:02x} on line {line}, in the {part} of record {number} ({header})"


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
