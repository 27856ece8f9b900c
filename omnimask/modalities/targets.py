"""Targets that work on any tokenizer whose prepared tokens are values to reconstruct."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnimask.modalities.base import Target, Tokenizer
from omnimask.registry import register


@register("target", "pixels")
class PixelTarget(Target):
    """The prepared token values themselves (MAE without ``norm_pix_loss``)."""

    @property
    def dim(self) -> int:
        return self.tokenizer.layout.token_dim

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.prepare(tokens[mask])

    def to_tokens(self, pred: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.restore(pred)


def normalize_per_token(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x - mean) / sqrt(var + eps)`` over the last dim; also returns mean and std ``[..., 1]``."""
    mean = x.mean(dim=-1, keepdim=True)
    std = (x.var(dim=-1, keepdim=True, unbiased=False) + eps).sqrt()
    return (x - mean) / std, mean, std


@register("target", "norm_pixels")
class NormPixelTarget(Target):
    """Prepared token values normalised per token over its ``D`` values (MAE ``norm_pix_loss``).

    ``(x - mean) / sqrt(var + eps)`` with the population variance, as MAE computes it.
    """

    @dataclass
    class Config:
        eps: float = 1e-6

    def __init__(self, cfg: Config, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        self.eps = cfg.eps

    @property
    def dim(self) -> int:
        return self.tokenizer.layout.token_dim

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return normalize_per_token(self.tokenizer.prepare(tokens[mask]), self.eps)[0]

    def to_tokens(self, pred: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """De-normalise with the *true* token statistics (previews only: this shows
        the predicted structure, its per-token mean and contrast come from the input)."""
        _, mean, std = normalize_per_token(self.tokenizer.prepare(tokens), self.eps)
        return self.tokenizer.restore(pred * std + mean)
