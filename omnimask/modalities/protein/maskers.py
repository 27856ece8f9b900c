"""BERT's masking as ESM trains with it: 15% of the residues predicted; of those 80% shown as
``<mask>``, 10% as a random residue, 10% unchanged. ``<cls>`` and ``<eos>`` are never masked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.modalities.base import Masker, TokenLayout
from omnimask.modalities.maskers import check_ratio
from omnimask.modalities.protein import alphabet
from omnimask.registry import register
from omnimask.seeding import rng


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
            chosen = rng(seed, "bert_mask").permutation(residues)[: self.num_masked(layout)]
            mask[chosen + self.cfg.specials_before] = True
        return torch.from_numpy(mask)

    def corrupt(self, tokens: torch.Tensor, mask: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``[N, 1]`` with the hidden ones replaced (``<mask>`` or a random residue, or kept),
        and ``mask_token [N]``: where ``<mask>`` was put."""
        g, mask = rng(seed, "bert_corrupt"), torch.as_tensor(mask)
        hidden = mask.nonzero().squeeze(1)
        fate = torch.from_numpy(g.random(len(hidden)))
        as_mask = hidden[fate < self.cfg.mask_share]
        as_random = hidden[(fate >= self.cfg.mask_share) & (fate < self.cfg.mask_share + self.cfg.random_share)]
        out = tokens.clone()
        out[as_mask] = alphabet.MASK
        out[as_random, 0] = torch.from_numpy(g.choice(alphabet.STANDARD, len(as_random))).to(out.dtype)
        mask_token = torch.zeros_like(mask)
        mask_token[as_mask] = True
        return out, mask_token
