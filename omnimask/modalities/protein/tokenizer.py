"""Protein tokenizer: ESM's ``<cls> residues <eos>`` token ids."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimask.core.interfaces import Tokenizer, TokenLayout
from omnimask.core.registry import register
from omnimask.modalities.protein import alphabet


@register("tokenizer", "esm")
class ESMTokenizer(Tokenizer):
    """Residues -> token ids ``[L + 2, 1]`` (uint8; ESM's 33-token alphabet, same indices):
    ``<cls> residues <eos>``, padded with ``<pad>`` in batches. Sequences are cropped to
    ``max_residues`` by the protein decoder, so ``L + 2 <= max_tokens``."""

    @dataclass
    class Config:
        max_tokens: int = 1024
        """Longest tokenized sequence, ``<cls>`` and ``<eos>`` included (ESM: 1024)."""

        def __post_init__(self) -> None:
            if self.max_tokens < 3:
                raise ValueError(f"max_tokens must be >= 3 (<cls>, a residue, <eos>), got {self.max_tokens}")

    variable_length = True
    pad_value = float(alphabet.PAD)
    vocab_size = len(alphabet.TOKENS)

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.layout = TokenLayout(grid=(cfg.max_tokens,), token_dim=1)

    def __call__(self, sample: str) -> torch.Tensor:
        if not sample:
            raise ValueError("empty sequence")
        ids = alphabet.encode(sample)
        if len(ids) > self.cfg.max_tokens:
            raise ValueError(
                f"a sequence of {len(sample)} residues gives {len(ids)} tokens, more than max_tokens={self.cfg.max_tokens}: "
                f"set data.augment.max_residues <= {self.cfg.max_tokens - 2}"
            )
        return torch.from_numpy(ids.astype("uint8"))[:, None]

    def num_tokens(self, size: int) -> int:
        return min(size + 2, self.cfg.max_tokens)

    def prepare(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids as int64 ``[..., N, 1]`` (an embedding's input, not floats)."""
        return tokens.long()
