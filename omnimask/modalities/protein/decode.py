"""Protein decoding for the loader: a sequence, cropped to a seeded random window when too long."""

from __future__ import annotations

from dataclasses import dataclass

from omnimask.core.seeding import rng


@dataclass
class ProteinAugmentConfig:
    """``data.augment`` for proteins."""

    max_residues: int = 1022
    """Longer sequences are cut to a random window of this many residues (ESM: 1024 tokens with <cls> and <eos>)."""

    def __post_init__(self) -> None:
        if self.max_residues < 1:
            raise ValueError(f"max_residues must be >= 1, got {self.max_residues}")


class ProteinDecoder:
    """``(members, seed) -> str``: the residues, a random window of ``max_residues`` when longer."""

    def __init__(self, augment: ProteinAugmentConfig):
        self.max_residues = augment.max_residues

    def __call__(self, members: dict[str, bytes], seed: int) -> str:
        data = members.get("seq")
        if data is None:
            raise ValueError(f"sample has no seq member (members: {sorted(members)})")
        seq = data.decode("ascii")
        if len(seq) > self.max_residues:
            start = int(rng(seed, "protein_crop").integers(0, len(seq) - self.max_residues + 1))
            seq = seq[start : start + self.max_residues]
        return seq
