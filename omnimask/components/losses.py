"""Losses several modalities share: per-value regression errors (``mse``, ``l1``, ``smooth_l1``) and
``cross_entropy`` over class ids. Chamfer (point clouds) and SCE (graphs) live with their modalities."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from omnimask.core.networks import Loss
from omnimask.core.registry import register


class TokenMeanLoss(Loss):
    """An error per predicted value, averaged over each token's ``D_t`` values, then over the tokens:
    ``pred, target [B, N_p, D_t]`` (or ``[M, D_t]``) -> scalar, computed in float32 (MAE's
    ``loss.mean(dim=-1)`` then the mean over the removed patches)."""

    is_sample_mean = True  # the mean over [B, N_p] tokens of equal weight, the same N_p in every sample

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.error(pred.float(), target.float()).mean(dim=-1).mean()

    @abstractmethod
    def error(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The error of each value: ``[..., D_t]`` -> ``[..., D_t]``."""


@register("loss", "mse")
class MSELoss(TokenMeanLoss):
    """Squared error (MAE, VideoMAE, AudioMAE: ``(pred - target) ** 2``), averaged per token, then over tokens."""

    def error(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).pow(2)


@register("loss", "l1")
class L1Loss(TokenMeanLoss):
    """Absolute error ``|pred - target|``, averaged per token, then over tokens."""

    def error(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs()


@register("loss", "smooth_l1")
class SmoothL1Loss(TokenMeanLoss):
    """Huber-like error (torch's ``smooth_l1_loss``): ``0.5 x^2 / beta`` where ``|x| < beta``, else
    ``|x| - 0.5 beta``, of ``x = pred - target``; averaged per token, then over tokens."""

    @dataclass
    class Config:
        beta: float = 1.0
        """Where the error turns from quadratic to linear (0: plain L1)."""

        def __post_init__(self) -> None:
            if self.beta < 0:
                raise ValueError(f"beta must be >= 0, got {self.beta}")

    def __init__(self, cfg: Config):
        super().__init__()
        self.beta = cfg.beta

    def error(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta)


@register("loss", "cross_entropy")
class CrossEntropyLoss(Loss):
    """Cross-entropy of logits ``pred [B, N_p, V]`` (or ``[M, V]``) against class ids ``target [B, N_p]``
    (or ``[M]``), averaged over the predicted tokens whose id is not ``ignore_index``, in float32 (ESM's
    masked-LM loss: fairseq's summed ``nll_loss`` of the log-softmax over the masked tokens, divided by
    their number)."""

    # targets equal to ignore_index drop out of the mean, so samples need not count alike
    is_sample_mean = False

    @dataclass
    class Config:
        ignore_index: int = -100
        """Targets of this id take no part in the loss (torch's default; the built-in targets hold none)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.ignore_index = cfg.ignore_index

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # one row per token: cross_entropy would read a grid batch's [B, N_p, V] as classes along dim 1
        return F.cross_entropy(pred.float().flatten(0, -2), target.flatten(), ignore_index=self.ignore_index)
