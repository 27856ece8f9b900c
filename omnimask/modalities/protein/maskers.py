"""BERT's masking as ESM trains with it: 15% of the residues predicted; of those 80% shown as
``<mask>``, 10% as a random residue, 10% unchanged. ``<cls>`` and ``<eos>`` are never masked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.components.maskers import check_ratio, random_mask
from omnimask.core.interfaces import Masker, TokenLayout
from omnimask.core.registry import register
from omnimask.core.seeding import uniform_words
from omnimask.modalities.protein import alphabet


@register("masker", "bert")
class BertMasker(Masker):
    """Hides ``max(1, round(ratio * R))`` of the ``R`` residues of a sequence (positions
    ``specials_before .. N - specials_after - 1``), uniformly at random; the encoder sees every token,
    the hidden ones corrupted 80/10/10 (each hidden token draws its fate independently, as
    fairseq's ``MaskTokensDataset`` that ESM trains with). Random replacements are standard residues."""

    shows_hidden = True

    @dataclass
    class Config:
        ratio: float = 0.15
        mask_share: float = 0.8
        """Share of the hidden tokens shown as ``<mask>``."""
        random_share: float = 0.1
        """Share shown as a random standard residue; the rest are left unchanged."""
        specials_before: int = 1
        """Tokens at the start that are never masked (``<cls>``)."""
        specials_after: int = 1
        """Tokens at the end that are never masked (``<eos>``)."""

        def __post_init__(self) -> None:
            check_ratio(self.ratio)
            if self.mask_share < 0 or self.random_share < 0 or self.mask_share + self.random_share > 1:
                raise ValueError(f"mask_share and random_share must be >= 0 and sum to <= 1, got {self.mask_share} and {self.random_share}")
            if self.specials_before < 0 or self.specials_after < 0:
                raise ValueError("specials_before and specials_after must be >= 0")

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def num_masked(self, layout: TokenLayout) -> int:
        residues = layout.num_tokens - self.cfg.specials_before - self.cfg.specials_after
        return max(1, int(self.cfg.ratio * residues + 0.5)) if residues > 0 else 0

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> torch.Tensor:
        residues = layout.num_tokens - self.cfg.specials_before - self.cfg.specials_after
        mask = np.zeros(layout.num_tokens, dtype=bool)
        if residues > 0:
            start = self.cfg.specials_before
            mask[start : start + residues] = random_mask(residues, self.num_masked(layout), seed)
        return torch.from_numpy(mask)

    def corrupt(self, tokens: torch.Tensor, mask: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``[N, 1]`` (on the CPU) with the hidden ones replaced (``<mask>`` or a random residue, or
        kept), and ``mask_token [N]``: where ``<mask>`` was put. In numpy, with the draws of
        :func:`~omnimask.core.seeding.uniform_words`: far cheaper than a seeded Generator and torch indexing,
        whose per-call overheads the loader would pay on every sequence."""
        x, hidden = tokens.numpy(), np.flatnonzero(np.asarray(mask))
        words = uniform_words(2 * len(hidden), seed, "bert_corrupt")
        fate = words[: len(hidden)] / 2.0**32  # uniform in [0, 1), one per hidden token
        as_mask = hidden[fate < self.cfg.mask_share]
        drawn = (fate >= self.cfg.mask_share) & (fate < self.cfg.mask_share + self.cfg.random_share)
        pick = (words[len(hidden) :][drawn].astype(np.uint64) * len(alphabet.STANDARD)) >> 32  # uniform in [0, 20)
        out = x.copy()
        out[as_mask] = alphabet.MASK
        out[hidden[drawn], 0] = alphabet.STANDARD[pick]
        mask_token = np.zeros(len(x), dtype=bool)
        mask_token[as_mask] = True
        return torch.from_numpy(out), torch.from_numpy(mask_token)
