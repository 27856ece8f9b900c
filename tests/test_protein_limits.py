"""Bounded memory for FASTA input: a record longer than ``max_length`` (default 100,000 residues) is
quarantined while it is read, never held whole (gzip bombs of one 200 MB sequence, on one line or on
many), a huge header line is cut, and the records after them are kept."""

import gzip

import pytest
from peak_rss import peak_rss_growth

from omnimask.core.interfaces import QuarantineError
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.protein import fasta
from omnimask.modalities.protein.ingest import (
    MAX_LENGTH,
    ProteinIngestConfig,
    encode_fasta,
)

MB = 1 << 20
BOMB_MB = 200
"""Size of each bomb's sequence (the issue's 200 MB)."""
HEADER_MB = 32
"""Size of the huge header line."""
NORMAL = b"MKTAYIAKQR"


def gzip_file(path, *pieces):
    """Write ``pieces`` (``(bytes, times)``) to a gzip file as a stream: the test holds one piece at a
    time (~1 MB), never the 200 MB it decompresses to. Level 1: twice as fast to write as the default
    level, in files of 0.9-2.6 MB instead of 0.2-0.6 MB; reading them is the same. Returns ``path``."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        for data, times in pieces:
            for _ in range(times):
                f.write(data)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """``{name: path}``: a 200 MB sequence on one line, one in 60-letter lines, and a 32 MB header
    line, each followed by a normal record."""
    root = tmp_path_factory.mktemp("bombs")
    line = b"A" * 60 + b"\n"
    return {
        "one_line": gzip_file(
            root / "one_line.fasta.gz", (b">bomb1 one line\nM", 1), (b"A" * MB, BOMB_MB), (b"\n>after1 normal\n" + NORMAL + b"\n", 1)
        ),
        "many_lines": gzip_file(
            root / "many_lines.fasta.gz",
            (b">bomb2 60 a line\n", 1),
            (line * (MB // 61), BOMB_MB),
            (b">after2 normal\n" + NORMAL + b"\n", 1),
        ),
        "header": gzip_file(
            root / "header.fasta.gz", (b">bomb3 ", 1), (b"D" * MB, HEADER_MB), (b"\n" + NORMAL + b"\n>after3 normal\n" + NORMAL + b"\n", 1)
        ),
    }


def results(path, **options):
    """``[(name, sample payload or quarantine reason)]`` of a FASTA file."""
    return [
        (name, str(r) if isinstance(r, QuarantineError) else r.payload) for name, r in encode_fasta(path, ProteinIngestConfig(**options))
    ]


def too_long_reason(limit):
    return (
        f"sequence length more than {limit:,} exceeds max_length={limit:,} (a limit on what one input may "
        "expand to in memory; raise it with `-o max_length=N`, or `-o max_length=null` for none)"
    )


@pytest.mark.parametrize("bomb", ["one_line", "many_lines"])
def test_a_gzip_bomb_record_is_quarantined_by_default_and_the_next_record_kept(bombs, bomb):
    assert ProteinIngestConfig().max_length == MAX_LENGTH == 100_000
    (first, reason), (second, payload) = results(bombs[bomb])
    assert first.startswith("1:bomb") and reason == too_long_reason(100_000)
    assert second.startswith("2:after") and payload == NORMAL


def test_a_bomb_through_preprocess_every_record_accounted_for(bombs, tmp_path):
    from omnimask.data.preprocess import preprocess

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "bomb.fasta.gz").write_bytes(bombs["one_line"].read_bytes())
    manifest = preprocess("protein", raw, tmp_path / "shards", executor="processes", num_cpus=1)
    reasons = {q["source"]: q["reason"] for q in read_quarantine(tmp_path / "shards")}
    assert reasons == {"bomb.fasta.gz#1:bomb1": too_long_reason(100_000)}
    assert manifest.num_samples == 1 and manifest.num_inputs == 2 == manifest.num_samples + manifest.num_quarantined


def test_reading_the_bombs_takes_bounded_memory(bombs):
    """On the reader that held every record whole, the peak RSS grew by ~0.87 GB (one line), ~1.2 GB
    (many lines) and ~0.15 GB (the header), each file alone; now by under a megabyte."""
    growth = peak_rss_growth(
        setup="from pathlib import Path\nfrom omnimask.modalities.protein.ingest import ProteinIngestConfig, encode_fasta",
        body="\n".join(f"for _ in encode_fasta(Path({str(path)!r}), ProteinIngestConfig()): pass" for path in bombs.values()),
    )
    bound = 64 * MB + 16 * MAX_LENGTH  # the interpreter's own noise, and a few copies of a record at the limit
    assert growth < bound, f"peak RSS grew by {growth / MB:.0f} MiB"


def test_a_record_at_max_length_is_kept_one_past_it_quarantined(tmp_path):
    spaced = " ".join(["ACDEFGHIKL"] * 5)  # whitespace inside a line is not sequence
    records = {"at": "M" * 50, "stop": "M" * 50 + "*", "spaced": spaced, "past": "M" * 51, "far": "MA" * 500}
    text = "".join(f">{name}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60)) for name, seq in records.items())
    (tmp_path / "a.fasta").write_text(text)
    got = dict(results(tmp_path / "a.fasta", max_length=50))
    assert got["1:at"] == b"M" * 50 and got["2:stop"] == b"M" * 50 and got["3:spaced"] == spaced.replace(" ", "").encode()
    assert got["4:past"] == too_long_reason(50).replace("more than 50", "51")  # held, so its exact length is known
    assert got["5:far"] == too_long_reason(50)  # dropped while it was read
    assert dict(results(tmp_path / "a.fasta", max_length=None))["5:far"] == b"MA" * 500


def test_a_huge_header_line_is_cut_and_its_record_kept(bombs):
    samples = list(encode_fasta(bombs["header"], ProteinIngestConfig()))
    (name, cut), (after, normal) = samples
    assert name == "1:bomb3" and after == "2:after3" and cut.payload == normal.payload == NORMAL
    assert cut.meta.get("header_cut") is True and len(cut.meta["description"]) < 64 * 1024
    assert cut.meta["description"] == "D" * (fasta.HEADER_LIMIT - len(">bomb3 "))
    assert normal.meta["description"] == "normal" and "header_cut" not in normal.meta


TRICKY = (
    b"; a comment before the first record\n\n>r1 first \r\nMKTA YIAK\r\n\n;comment \xe9 MK\nQRQ\xe4I\n"
    b"  >r2 indented header\nAC\xffDE\n>r3\n"
    + b"L" * 300
    + b"\n>r4 long header "
    + b"h" * 40
    + b"\n"
    + b"MK\n" * 40
    + b">r5 no final break\nMKV*"
)


@pytest.mark.parametrize("max_letters", [None, 20, 100])
def test_chunk_boundaries_do_not_change_the_records(tmp_path, monkeypatch, max_letters):
    """Records, line numbers and bytes that are not ASCII, read in chunks of a few characters (records,
    lines and headers cut anywhere, long lines read in pieces), are the ones read in one chunk."""
    path = tmp_path / "tricky.fasta"
    path.write_bytes(TRICKY)
    monkeypatch.setattr(fasta, "HEADER_LIMIT", 20)

    def read(chunk):
        monkeypatch.setattr(fasta, "CHUNK_CHARS", chunk)
        with fasta.open_fasta(path) as stream:
            return list(fasta.iter_fasta(stream, max_letters=max_letters))

    whole = read(1 << 16)
    assert [(r.id, r.line, r.not_ascii, r.header_cut) for r in whole] == [
        ("r1", 3, (7, 0xE4), False),
        ("r2", 8, (9, 0xFF), False),
        ("r3", 10, None, False),
        ("r4", 12, None, True),
        ("r5", 53, None, False),
    ]
    assert whole[0].description == "first" and whole[3].description == (">r4 long header " + "h" * 40)[4:20]
    cap = max_letters if max_letters is not None else 1 << 30
    assert [r.too_long for r in whole] == [False, False, cap < 300, cap < 80, False]
    assert [r.sequence for r in whole] == [
        seq if len(seq) <= cap else "" for seq in ("MKTAYIAKQRQ\udce4I", "AC\udcffDE", "L" * 300, "MK" * 40, "MKV*")
    ]
    for chunk in (1, 2, 3, 5, 8, 13, 64):
        assert read(chunk) == whole, chunk
