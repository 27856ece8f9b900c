"""Targets that work on any tokenizer whose prepared tokens are values to reconstruct.

Every one is the hidden tokens (compact, e.g. uint8; ``gathers_tokens``: gathered on the
device from the batch's tokens where the loader need not) with the float work in
``finalize``, on the device, batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from omnimask.core.interfaces import Target, Tokenizer
from omnimask.core.registry import register

NUMPY_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32, torch.float64)


def hidden_tokens(tokens: torch.Tensor, mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``tokens [N, D]`` at the hidden positions of ``mask [N]`` (a tensor or a numpy array, as maskers
    give them), ascending: ``[N_h, D]``.

    On the CPU (a loader worker) through numpy's boolean indexing: one call instead of
    three torch ops (nonzero, squeeze, index_select), each of which costs tens of
    microseconds right after an image was decoded; torch's ``index_select`` elsewhere.
    """
    if tokens.device.type == "cpu" and tokens.dtype in NUMPY_DTYPES:
        return torch.from_numpy(tokens.numpy()[np.asarray(mask)])
    return tokens.index_select(0, torch.as_tensor(mask, device=tokens.device).nonzero().squeeze(1))


class HiddenTokensTarget(Target):
    """A target whose compact form is the hidden tokens themselves, ``[N_h, D]`` in the tokens'
    dtype (its ``finalize`` does the rest, on the device). It ``gathers_tokens``, unless a
    subclass computes its own compact target (overrides ``__call__``): then the loader runs it."""

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden_tokens(tokens, mask)

    @property
    def gathers_tokens(self) -> bool:
        return type(self).__call__ is HiddenTokensTarget.__call__


@register("target", "pixels")
class PixelTarget(HiddenTokensTarget):
    """The prepared token values themselves (MAE without ``norm_pix_loss``)."""

    @property
    def dim(self) -> int:
        return self.tokenizer.layout.token_dim

    def finalize(self, target: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.prepare(target)

    def to_tokens(self, pred: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.restore(pred)


@register("target", "points")
class PointTarget(PixelTarget):
    """The hidden tokens' values as they are: for point groups, the re-centred coordinates
    ``[N_h, S * 3]`` that a Chamfer-distance head compares its prediction with (Point-MAE)."""


@register("target", "node_features")
class NodeFeatureTarget(PixelTarget):
    """The hidden nodes' original features ``[N_h, F]`` (GraphMAE), before the masker corrupted them."""


def normalize_per_token(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's ``norm_pix_loss``: ``(x - mean) / sqrt(var + eps)`` over the last dim, with the
    unbiased variance (``Tensor.var``'s default, which MAE calls). Returns the normalised
    values and the mean and divisor ``[..., 1]``."""
    mean = x.mean(dim=-1, keepdim=True)
    std = (x.var(dim=-1, keepdim=True) + eps).sqrt()
    return (x - mean) / std, mean, std


def normalize_per_channel(x: torch.Tensor, channels: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VideoMAE's target normalisation: tokens ``[..., P * C]`` with values ordered (position, channel)
    are normalised per channel over their ``P`` values: ``(x - mean) / (std + eps)``, unbiased
    std, eps added after the square root. Returns values ``[..., P * C]`` and mean and divisor ``[..., 1, C]``."""
    v = x.unflatten(-1, (-1, channels))
    mean = v.mean(dim=-2, keepdim=True)
    std = v.var(dim=-2, keepdim=True).sqrt() + eps
    return ((v - mean) / std).flatten(-2), mean, std


@register("target", "norm_pixels")
class NormPixelTarget(PixelTarget):
    """Prepared token values normalised per token over its ``D`` values (MAE and AudioMAE ``norm_pix_loss``).

    ``(x - mean) / sqrt(var + eps)`` with the unbiased variance, as both compute it.
    """

    @dataclass
    class Config:
        eps: float = 1e-6

    def __init__(self, cfg: Config, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        self.eps = cfg.eps

    def finalize(self, target: torch.Tensor) -> torch.Tensor:
        return normalize_per_token(self.tokenizer.prepare(target), self.eps)[0]

    def to_tokens(self, pred: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """De-normalise with the *true* token statistics (previews only: this shows
        the predicted structure, its per-token mean and contrast come from the input)."""
        _, mean, std = normalize_per_token(self.tokenizer.prepare(tokens), self.eps)
        return self.tokenizer.restore(pred * std + mean)


@register("target", "channel_norm_pixels")
class ChannelNormPixelTarget(PixelTarget):
    """VideoMAE's target: each token's pixel values in [0, 1], normalised per colour channel
    over the token's positions (``2 x 16 x 16 = 512`` values per channel for a tubelet):
    ``(x - mean_c) / (std_c + eps)``, unbiased std. Token values must be ordered
    (position, channel), as the image and video tokenizers order them.
    """

    @dataclass
    class Config:
        channels: int = 3
        eps: float = 1e-6
        scale: float = 1 / 255
        """Compact token values are multiplied by this first (uint8 pixels -> [0, 1], as VideoMAE)."""

        def __post_init__(self) -> None:
            if self.channels < 1:
                raise ValueError(f"channels must be >= 1, got {self.channels}")

    def __init__(self, cfg: Config, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        if tokenizer.layout.token_dim % cfg.channels:
            raise ValueError(f"token_dim {tokenizer.layout.token_dim} is not a multiple of channels={cfg.channels}")
        self.cfg = cfg

    def finalize(self, target: torch.Tensor) -> torch.Tensor:
        return normalize_per_channel(target.float() * self.cfg.scale, self.cfg.channels, self.cfg.eps)[0]

    def to_tokens(self, pred: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """De-normalise with the true per-channel statistics (previews only), back to compact scale."""
        c = self.cfg
        _, mean, std = normalize_per_channel(tokens.float() * c.scale, c.channels, c.eps)
        return ((pred.unflatten(-1, (-1, c.channels)) * std + mean) / c.scale).flatten(-2)


@register("target", "token_ids")
class TokenIdTarget(HiddenTokensTarget):
    """The original token ids at the hidden positions (masked language modelling): compact
    ``[N_h, 1]``, finalized to int64 class indices ``[..., N_h]`` (``[M]`` in padded batches) for a
    cross-entropy head. ``dim`` is the tokenizer's vocabulary size, the head's number of logits."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        if not hasattr(tokenizer, "vocab_size"):
            raise ValueError(f"token_ids needs a tokenizer with a vocabulary (vocab_size), not {type(tokenizer).__name__}")

    @property
    def dim(self) -> int:
        return int(self.tokenizer.vocab_size)  # type: ignore[attr-defined]  # no part of Tokenizer: __init__ checked this one has it

    def finalize(self, target: torch.Tensor) -> torch.Tensor:
        return target.long().squeeze(-1)
