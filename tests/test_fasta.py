"""FASTA reading: records, gzip, validation against the ESM alphabet, bytes that are not ASCII (only their
record is quarantined) and files that are not FASTA text (quarantined whole)."""

import gzip

import pytest

from omnimask.core.interfaces import QuarantineError
from omnimask.modalities.protein.fasta import clean_sequence, iter_fasta, not_ascii_reason, open_fasta, readable
from omnimask.modalities.protein.ingest import ProteinIngestConfig, encode_fasta

TEXT = """>sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens
MVLSPADKTN VKAAWGKVGA
HAGEYGAEAL ERMFLSFPTT
; a comment line
>empty_record
>lower soft-masked
mkTAyiak*
>bad
MKJ1
"""


def test_records_plain_and_gzip(tmp_path):
    (tmp_path / "a.fasta").write_text(TEXT)
    with gzip.open(tmp_path / "a.fa.gz", "wt") as f:
        f.write(TEXT)
    for name in ("a.fasta", "a.fa.gz"):
        with open_fasta(tmp_path / name) as stream:
            records = list(iter_fasta(stream))
        assert [r.id for r in records] == ["sp|P69905|HBA_HUMAN", "empty_record", "lower", "bad"]
        assert records[0].description == "Hemoglobin subunit alpha OS=Homo sapiens"
        assert records[0].sequence == "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTT" and records[0].line == 1
        assert records[1].sequence == "" and records[1].line == 5


def test_a_utf8_byte_order_mark_is_skipped(tmp_path):
    """Windows editors start text files with one; it is not a byte of the first header."""
    (tmp_path / "bom.fasta").write_bytes(b"\xef\xbb\xbf" + TEXT.encode())
    with gzip.open(tmp_path / "bom.fa.gz", "wb") as f:
        f.write(b"\xef\xbb\xbf" + TEXT.encode())
    for name in ("bom.fasta", "bom.fa.gz"):
        with open_fasta(tmp_path / name) as stream:
            records = list(iter_fasta(stream))
        assert records[0].id == "sp|P69905|HBA_HUMAN" and records[0].not_ascii is None and records[0].line == 1


def test_clean_sequence():
    assert clean_sequence("mkTAyiak*", "quarantine") == ("MKTAYIAK", 0)
    with pytest.raises(ValueError, match="empty sequence"):
        clean_sequence("", "quarantine")
    with pytest.raises(ValueError, match="outside the protein alphabet: '1J'"):
        clean_sequence("MKJ1", "quarantine")
    assert clean_sequence("MKJ1", "map_to_x") == ("MKXX", 2)


def test_text_before_the_first_header_is_not_fasta(tmp_path):
    (tmp_path / "x.fasta").write_text("MKTAYIAK\n>a\nMK\n")
    with open_fasta(tmp_path / "x.fasta") as stream, pytest.raises(ValueError, match="before the first '>'"):
        list(iter_fasta(stream))


def fasta_file(path, records, compress=False):
    """Write ``records`` (``(header, sequence)`` as bytes) as FASTA, 60 letters a line; returns ``path``."""
    lines = lambda seq: b"".join(seq[i : i + 60] + b"\n" for i in range(0, len(seq), 60))  # noqa: E731  (a one-line helper for the next line)
    data = b"".join(b">" + head + b"\n" + lines(seq) for head, seq in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def good_records(n=45):
    return [(f"r{i} protein {i}".encode(), b"MKTAYIAKQR" * (7 + i % 5)) for i in range(n)]


def split_results(results):
    """``{name: sequence}`` of the samples and ``{name: reason}`` of the quarantined records."""
    samples = {name: r.payload.decode() for name, r in results if not isinstance(r, QuarantineError)}
    return samples, {name: str(r) for name, r in results if isinstance(r, QuarantineError)}


@pytest.mark.parametrize("compress", [False, True])
def test_a_bad_header_byte_quarantines_only_its_record(tmp_path, compress):
    records = good_records()
    records[43] = (b"weird caf\xe9 protein", b"MKTAYIAK")  # Latin-1, not ASCII
    path = fasta_file(tmp_path / ("seqs.fasta.gz" if compress else "seqs.fasta"), records, compress)
    samples, quarantined = split_results(list(encode_fasta(path, ProteinIngestConfig())))
    assert len(samples) == 44 and list(quarantined) == ["44:weird"]
    line = 1 + sum(1 + -(-len(seq) // 60) for _, seq in records[:43])  # the header's line
    assert quarantined["44:weird"] == (
        f"not ASCII text: byte 0xe9 on line {line}, in the header of record 44 "
        r"(>weird caf\xe9 protein)"
    )
    assert samples["45:r44"] == records[44][1].decode()


def test_a_bad_sequence_byte_quarantines_only_its_record(tmp_path):
    records = good_records()
    records[6] = (b"r6 protein 6", b"M" * 100 + b"\xff" + b"K" * 30)  # on the record's second line
    samples, quarantined = split_results(list(encode_fasta(fasta_file(tmp_path / "seqs.fasta", records), ProteinIngestConfig())))
    assert len(samples) == 44 and list(quarantined) == ["7:r6"]
    line = 1 + sum(1 + -(-len(seq) // 60) for _, seq in records[:6]) + 2
    assert quarantined["7:r6"] == f"not ASCII text: byte 0xff on line {line}, in the sequence of record 7 (>r6 protein 6)"
    assert all(samples[f"{i + 1}:r{i}"] == seq.decode() for i, (_, seq) in enumerate(records) if i != 6)


def test_non_ascii_lines_are_located_across_blank_and_comment_lines(tmp_path):
    text = b">a x\nMK\n\n; caf\xe9 (a comment: ignored)\nMK\n  M\xc3\xa9K  \n>b\nMKV\n"
    (tmp_path / "a.fasta").write_bytes(text)
    with open_fasta(tmp_path / "a.fasta") as stream:
        a, b = iter_fasta(stream)
    assert a.not_ascii == (6, 0xC3) and a.header == ">a x" and b.not_ascii is None
    assert readable(a.sequence) == r"MKMKM\xc3\xa9K" and not_ascii_reason(a, 1).startswith("not ASCII text: byte 0xc3 on line 6")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b">a\nMK\x00\n", r"binary data or UTF-16 \(a NUL byte in the first 8000 bytes\): not an ASCII FASTA file"),
        (gzip.compress(bytes(range(256)) * 4), "binary data"),
        ("\ufeff>a\nMK\n".encode("utf-16"), "binary data or UTF-16"),
        (b"caf\xe9\n>a\nMK\n", r"line 1: bytes that are not ASCII text \(0xe9\) before the first '>' header"),
        (b"MKTAYIAK\n>a\nMK\n", "line 1: sequence data before the first '>' header"),
        (b"; a comment\n\n", "no FASTA records"),
        (b"\x1f\x8b not gzip", "unreadable: "),
    ],
)
def test_files_that_are_not_fasta_text_are_quarantined_whole(tmp_path, data, reason):
    (tmp_path / "x.fasta").write_bytes(data)
    with pytest.raises(QuarantineError, match=reason):
        list(encode_fasta(tmp_path / "x.fasta", ProteinIngestConfig()))
