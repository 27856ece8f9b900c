"""The ESM alphabet (ESM-1b / ESM-2): 33 tokens with ESM's indices, and sequence encoding."""

from __future__ import annotations

import numpy as np

SPECIALS_BEFORE = ("<cls>", "<pad>", "<eos>", "<unk>")
RESIDUES = tuple("LAGVSERTIDPKQNFYMHWC")
EXTRA = tuple("XBUZO.-")
SPECIALS_AFTER = ("<null_1>", "<mask>")
TOKENS = (*SPECIALS_BEFORE, *RESIDUES, *EXTRA, *SPECIALS_AFTER)
INDEX = {t: i for i, t in enumerate(TOKENS)}

CLS, PAD, EOS, UNK, MASK = (INDEX[t] for t in ("<cls>", "<pad>", "<eos>", "<unk>", "<mask>"))
STANDARD = np.array([INDEX[r] for r in RESIDUES], dtype=np.int64)
"""Indices of the 20 standard residues (what BERT's random replacement draws from)."""
SEQUENCE_CHARS = frozenset(RESIDUES + EXTRA) - {".", "-"}
"""Characters a protein sequence may hold: the 20 residues and X B U Z O (gaps are not sequence)."""

_LOOKUP = np.full(128, UNK, dtype=np.int64)
for _c in RESIDUES + EXTRA:
    _LOOKUP[ord(_c)] = INDEX[_c]


def encode(sequence: str) -> np.ndarray:
    """``<cls> residues <eos>`` as ESM indices, int64 ``[len + 2]``; the sequence must be upper-case ASCII."""
    body = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    return np.concatenate([[CLS], _LOOKUP[body], [EOS]]).astype(np.int64)


def decode(ids: np.ndarray) -> str:
    """Residue letters of ESM indices (special tokens dropped)."""
    return "".join(TOKENS[i] for i in ids if TOKENS[i] in SEQUENCE_CHARS or TOKENS[i] in (".", "-"))
