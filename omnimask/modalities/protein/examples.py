"""Demo and test proteins: sequences from a few made-up families (a shared motif, point mutations,
insertions), written as FASTA files, plain and gzipped, with a few bad records."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

RESIDUES = "LAGVSERTIDPKQNFYMHWC"
FREQUENCIES = np.array([9.9, 8.3, 7.1, 6.9, 6.6, 6.8, 5.5, 5.3, 5.9, 5.5, 4.7, 5.8, 3.9, 4.1, 3.9, 2.9, 2.4, 2.3, 1.1, 1.4])
"""Residue frequencies in UniProt (%), in RESIDUES order."""


def family_sequence(motif: str, g: np.random.Generator) -> str:
    """A member of the family of ``motif``: the motif with ~8% point mutations, between random flanks."""
    p = FREQUENCIES / FREQUENCIES.sum()
    body = np.array(list(motif))
    mutate = g.random(len(body)) < 0.08
    body[mutate] = g.choice(list(RESIDUES), int(mutate.sum()), p=p)
    flank = lambda: "".join(g.choice(list(RESIDUES), int(g.integers(0, 40)), p=p))  # noqa: E731  (a one-line helper, called twice on the next line)
    return flank() + "".join(body) + flank()


def build_demo_proteins(root: Path, count: int, seed: int = 0) -> int:
    """``count`` good sequences in four FASTA files (two gzipped), 60 residues per line, from six
    families; plus an empty record, one with characters outside the alphabet and an exact duplicate.
    Returns the number of records written."""
    g = np.random.default_rng(seed)
    p = FREQUENCIES / FREQUENCIES.sum()
    motifs = ["".join(g.choice(list(RESIDUES), int(g.integers(40, 160)), p=p)) for _ in range(6)]
    root.mkdir(parents=True, exist_ok=True)
    records = [(f"demo{i:04d} family={i % 6}", family_sequence(motifs[i % 6], g)) for i in range(count)]
    records += [("empty_record", ""), ("bad_chars", "MKT1AJ*"), ("copy_of_demo0000", records[0][1])]
    parts = np.array_split(np.arange(len(records)), 4)
    for k, part in enumerate(parts):
        text = "".join(
            f">{records[i][0]}\n" + "".join(records[i][1][j : j + 60] + "\n" for j in range(0, len(records[i][1]), 60)) for i in part
        )
        if k % 2:
            with gzip.open(root / f"part{k}.fasta.gz", "wt") as f:
                f.write(text)
        else:
            (root / f"part{k}.fasta").write_text(text)
    return len(records)
