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
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional

from omnimask.modalities.protein.alphabet import SEQUENCE_CHARS

GZIP_MAGIC = b"\x1f\x8b"
BINARY_SNIFF_BYTES = 8000
"""A NUL byte among a file's first (decompressed) bytes, up to this many, marks it binary (git's test)."""
HEADER_SHOWN = 80
"""Characters of a header that a quarantine reason shows."""
CHUNK_CHARS = 1 << 16
"""Characters read from the stream at a time (64 Ki). Records are found in a chunk with ``str`` methods
(loops in C) rather than line by line in Python; a line that does not end within this many characters
is read on a chunk at a time, so that no line is held whole (a gzip bomb may be one 200 MB line)."""
HEADER_LIMIT = 1 << 16
"""Characters of a header line that are kept (64 Ki); a longer header is cut (the rest is read past)
and its record marked :attr:`FastaRecord.header_cut`. Far above real headers (UniProt's are under 1 Ki;
NCBI nr's, which list every identical protein, the longest real ones), and cut rather than
quarantined: the description is metadata, the sequence is the sample. (The part cut off is not looked
at: a byte that is not ASCII there does not quarantine the record.)"""
_NOT_ASCII = re.compile("[^\x00-\x7f]")  # finds the first one in a block that has one


@dataclass(frozen=True)
class FastaRecord:
    """One ``>`` record: ``id`` (first word of the header), ``description`` (the rest), the sequence
    letters as written (line breaks and spaces removed), and the header's line number.

    ``not_ascii`` is ``(line number, byte value)`` of the record's first byte that is not ASCII (in its
    header or its sequence lines), or None; such bytes stay in the strings as ``surrogateescape``
    surrogates (:func:`readable` shows them as ``\\xNN``). ``too_long``: the sequence had more letters
    than the reader was asked to hold; it was dropped while reading (``sequence`` is empty).
    ``header_cut``: the header line was longer than :data:`HEADER_LIMIT` and is cut there."""

    id: str
    description: str
    sequence: str
    line: int
    not_ascii: Optional[tuple[int, int]] = None
    too_long: bool = False
    header_cut: bool = False

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


def iter_fasta(stream: io.TextIOBase, *, max_letters: int | None = None) -> Iterator[FastaRecord]:
    """The records of a FASTA stream, in order. Blank lines and ``;`` comment lines are skipped.

    Raises ValueError when a line other than those comes before the first ``>`` header: the stream
    is not FASTA (or not text). Bytes that are not ASCII elsewhere do not raise: the record holding
    them says where the first one is (:attr:`FastaRecord.not_ascii`).

    Memory does not grow with the stream, nor with a line or a record, unless asked to: the stream is
    read :data:`CHUNK_CHARS` at a time, a longer line piece by piece, a header is cut to
    :data:`HEADER_LIMIT` characters (:attr:`FastaRecord.header_cut`), and a record whose sequence has more
    than ``max_letters`` letters (whitespace aside) is dropped as soon as it has: the rest of it is read
    past, not kept, and it comes as a :attr:`FastaRecord.too_long` record without its sequence. With
    ``max_letters=None`` every sequence is kept whole, however long."""
    return _Scanner(stream, max_letters).records()


_Header = tuple[str, str, int, bool, tuple[int, int] | None]
"""A record's header line, parsed: id, description, line number, whether it was cut, and where its
first byte that is not ASCII is (or None)."""


class _Scanner:
    """The state of :func:`iter_fasta`: the stream, the number of the next line to scan, the text read
    but not scanned yet (``carry``: an unfinished line), and the record that goes on past the text
    scanned so far (its header; the letters of its sequence so far and how many; whether it was
    dropped; its first byte that is not ASCII). Records are finished into ``done`` while a chunk is
    scanned and handed out after it.

    A record that lies whole in a chunk, without comment lines, is built at once from its header line
    and the block of lines up to the next header (in :meth:`_scan`: the common case, kept fast); the
    others are read a block or a line at a time (:meth:`_block`, :meth:`_line`, :meth:`_long_line`)."""

    def __init__(self, stream: io.TextIOBase, max_letters: int | None) -> None:
        self.stream = stream
        self.max_letters = max_letters
        self.line = 1
        self.carry = ""
        self.done: list[FastaRecord] = []
        self.head: _Header | None = None
        self.pieces: list[str] = []
        self.size = 0
        self.too_long = False
        self.not_ascii: tuple[int, int] | None = None

    def records(self) -> Iterator[FastaRecord]:
        """The records, a chunk of the stream at a time."""
        while True:
            chunk = self.stream.read(CHUNK_CHARS)
            text = self.carry + chunk if chunk else self.carry + "\n" * bool(self.carry)  # a last line without a break too
            end = text.rfind("\n") + 1
            self._scan(text, end)
            self.carry = text[end:]
            if len(self.carry) >= CHUNK_CHARS:  # no line break in a chunk's length: not held whole
                self._long_line(self.carry)
            yield from self.done
            self.done.clear()
            if not chunk:
                break
        self._finish()
        yield from self.done

    def _scan(self, text: str, end: int) -> None:
        """Read the complete lines ``text[:end]``: the lines before the first header line (the record of
        the chunk before goes on), then each header line with the block of lines up to the next one.
        A record that lies whole in the text, without comment lines, is built at once (the common case:
        this loop is the reader's hot path, hence its local variables)."""
        i = 0
        if not text.startswith(">"):
            j = text.find("\n>", 0, end)
            i = end if j < 0 else j + 1
            self._block(text[:i])
        if i < end:
            self._finish()
        done, line, cap = self.done, self.line, self.max_letters
        while i < end:
            eol = text.index("\n", i, end)
            j = text.find("\n>", eol, end)
            stop = end if j < 0 else j + 1
            block = text[eol + 1 : stop]
            if j >= 0 and ">" not in block and ";" not in block:
                letters, header = "".join(block.split()), text[i:eol]
                too_long = cap is not None and len(letters) > cap
                if letters.isascii() and header.isascii() and len(header) <= HEADER_LIMIT and not too_long:
                    done.append(FastaRecord(*_id_and_description(header), letters, line))  # nothing to note
                else:
                    not_ascii = None if letters.isascii() else _first_non_ascii(block, line + 1)
                    done.append(_record(_parse_header(header, line), letters, not_ascii, too_long))
                line += 1 + block.count("\n")
            else:  # it may go on in the next chunk, or it holds comments or an indented header
                self.line = line
                self._start(text[i:eol])
                self._block(block)
                if j >= 0:
                    self._finish()
                line = self.line
            i = stop
        self.line = line

    def _start(self, header: str, *, cut: bool = False) -> None:
        """Start reading the record of the ``header`` line, the next line (``cut``: known to be longer)."""
        self.head = _parse_header(header, self.line, cut=cut)
        self.line += 1

    def _finish(self) -> None:
        """Hand out the record being read, if any."""
        if self.head is not None:
            self.done.append(_record(self.head, "".join(self.pieces), self.not_ascii, self.too_long))
            self.head, self.pieces, self.size, self.too_long, self.not_ascii = None, [], 0, False, None

    def _block(self, block: str) -> None:
        """Lines ``block`` (each with its line break) that do not start with ``>``: more of the record
        being read, at once, or line by line when they hold a comment or a ``>``, or come before the
        first header."""
        if self.head is None or ">" in block or ";" in block:
            for line in block.split("\n")[:-1]:
                self._line(line.strip())
        else:
            self._add(block, self.line)
            self.line += block.count("\n")

    def _line(self, text: str) -> None:
        """The next line, stripped: a header, a blank or comment line, or sequence."""
        if text.startswith(">"):
            self._finish()
            self._start(text)
            return
        if text and not text.startswith(";"):
            if self.head is None:
                raise ValueError(_before_first_header(text, self.line))
            self._add(text, self.line)
        self.line += 1

    def _add(self, text: str, line: int) -> None:
        """Add the letters of ``text`` (sequence lines from ``line`` on, or a piece of one line) to the
        record being read; drop them all once there are more than ``max_letters``."""
        if self.too_long:
            return  # the record is dropped: the rest of it is read past
        letters = "".join(text.split())
        if self.not_ascii is None and not letters.isascii():
            self.not_ascii = _first_non_ascii(text, line)
        self.size += len(letters)
        if self.max_letters is not None and self.size > self.max_letters:
            self.too_long, self.pieces = True, []
        elif letters:
            self.pieces.append(letters)

    def _long_line(self, head: str) -> None:
        """Read the line that starts with ``head`` (:data:`CHUNK_CHARS` characters or more, no line break)
        to its end a chunk at a time, keeping no more of it than a header's :data:`HEADER_LIMIT`
        characters or what a sequence may hold; ``carry`` is then the text after it."""
        pieces = self._rest_of_line(head)
        first = next((piece for piece in (p.lstrip() for p in pieces) if piece), "")
        if first.startswith(">"):
            while len(first) <= HEADER_LIMIT and (piece := next(pieces, None)) is not None:
                first += piece
            cut = bool(first[HEADER_LIMIT:].strip()) or any(piece.strip() for piece in pieces)
            self._finish()
            self._start(first[:HEADER_LIMIT], cut=cut)
        elif first and not first.startswith(";"):
            if self.head is None:  # not FASTA: the first piece that is not ASCII tells why, if any
                bad = next((p for p in itertools.chain((first,), pieces) if not p.isascii()), first)
                raise ValueError(_before_first_header(bad, self.line))
            for piece in itertools.chain((first,), pieces):
                self._add(piece, self.line)
            self.line += 1
        else:
            self.line += 1  # a blank or comment line
        for _ in pieces:  # what is not kept: a comment, the tail of a header
            pass

    def _rest_of_line(self, head: str) -> Iterator[str]:
        """``head`` and then the rest of its line, a chunk at a time, without the line break; sets
        ``carry`` to what follows the line."""
        yield head
        self.carry = ""
        while chunk := self.stream.read(CHUNK_CHARS):
            eol = chunk.find("\n")
            if eol >= 0:
                self.carry = chunk[eol + 1 :]
                yield chunk[:eol]
                return
            yield chunk


def _record(head: _Header, letters: str, not_ascii: tuple[int, int] | None, too_long: bool) -> FastaRecord:
    """The record of ``head`` and the ``letters`` of its sequence (``not_ascii``: their first byte that
    is not ASCII), or, ``too_long``, without them."""
    ident, description, line, cut, bad_header = head
    return FastaRecord(ident, description, "" if too_long else letters, line, bad_header or not_ascii, too_long, cut)


def _parse_header(text: str, line: int, *, cut: bool = False) -> _Header:
    """The :data:`_Header` of the header line ``text`` (``>`` and all), line ``line``, cut to
    :data:`HEADER_LIMIT` characters (``cut``: ``text`` is the start of a longer line, already cut)."""
    text = text.strip()
    cut = cut or len(text) > HEADER_LIMIT
    if cut:
        text = text[:HEADER_LIMIT].rstrip()
    not_ascii = None if text.isascii() else (line, first_non_ascii_byte(text))
    return (*_id_and_description(text), line, cut, not_ascii)


def _id_and_description(header: str) -> tuple[str, str]:
    """The first word of a ``header`` line after its ``>``, and the rest (line breaks, spaces around it
    removed)."""
    words = header[1:].split(None, 1)
    return (words[0], words[1].rstrip()) if len(words) > 1 else (words[0] if words else "", "")


def _first_non_ascii(text: str, line: int) -> tuple[int, int]:
    """``(line number, byte value)`` of the first byte that is not ASCII in ``text`` (which has one),
    whose first line is ``line``."""
    at = _NOT_ASCII.search(text).start()  # type: ignore[union-attr]  # the caller's text holds a non-ASCII character
    return line + text.count("\n", 0, at), first_non_ascii_byte(text[at])


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
