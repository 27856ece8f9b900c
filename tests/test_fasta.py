"""FASTA reading: records, gzip, validation against the ESM alphabet."""

import gzip

import pytest

from omnimask.modalities.protein.fasta import clean_sequence, iter_fasta, open_fasta

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
