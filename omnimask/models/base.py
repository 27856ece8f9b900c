"""Encoder and Head interfaces (the other two of the four modules)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from omnimask.models.layers import split_ids


@dataclass
class MaskIndex:
    """Index views of a batch mask, computed once per step and shared by encoder and head.

    ``mask [B, N]`` (True = hidden), ``ids_keep [B, N_v]``, ``ids_hidden [B, N_h]``,
    ``ids_restore [B, N]`` (see :func:`omnimask.models.layers.split_ids`).
    """

    mask: torch.Tensor
    ids_keep: torch.Tensor
    ids_hidden: torch.Tensor
    ids_restore: torch.Tensor

    @classmethod
    def from_mask(cls, mask: torch.Tensor, num_hidden: int) -> "MaskIndex":
        return cls(mask, *split_ids(mask, num_hidden))


class Encoder(nn.Module, ABC):
    """Sees the visible tokens: ``tokens [B, N, D]`` -> ``latent [B, L, E]``.

    ``dim`` is ``E``. What ``L`` covers (visible tokens, plus a cls token) is the
    encoder's choice; its head knows how to read it.
    """

    dim: int

    @abstractmethod
    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor: ...


class Head(nn.Module, ABC):
    """Decoder and loss: ``latent [B, L, E]`` -> predictions ``[B, N_h, D_t]`` for hidden tokens."""

    @abstractmethod
    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor: ...

    @abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of predictions and targets ``[B, N_h, D_t]`` (hidden tokens only)."""
