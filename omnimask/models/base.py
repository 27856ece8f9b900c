"""Encoder and Head interfaces (the other two of the four modules)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from omnimask.models.layers import split_ids


@dataclass
class MaskIndex:
    """Index views of a batch's masks, computed once per step and shared by encoder and head.

    - ``mask [B, N]``: True = hidden from the encoder; ``ids_keep [B, N_v]``,
      ``ids_hidden [B, N_h]``, ``ids_restore [B, N]`` (see
      :func:`omnimask.models.layers.split_ids`).
    - ``ids_query [B, N_q]``: the positions the decoder gets a query (mask token)
      for, ascending. Without a decoder masker these are the hidden tokens (MAE).
      With one (VideoMAE V2's dual masking) they are the positions the decoder
      masker leaves visible, hidden from the encoder or not.
    - ``pick [B, N_p]`` (or None when every query is predicted): which queries are
      predicted and in the loss, the hidden ones. ``ids_predict`` are their positions.
    - ``coords [B, N, C]`` (or None for grid tokens): the tokens' positions in the data
      (point-cloud group centres), for encoders and heads that embed positions from data.
    """

    mask: torch.Tensor
    ids_keep: torch.Tensor
    ids_hidden: torch.Tensor
    ids_restore: torch.Tensor
    ids_query: torch.Tensor
    pick: Optional[torch.Tensor] = None
    coords: Optional[torch.Tensor] = None

    @classmethod
    def from_mask(
        cls,
        mask: torch.Tensor,
        num_hidden: int,
        queries: Optional[torch.Tensor] = None,
        num_queries: Optional[int] = None,
        num_predict: Optional[int] = None,
        coords: Optional[torch.Tensor] = None,
    ) -> "MaskIndex":
        keep, hidden, restore = split_ids(mask, num_hidden)
        if queries is None:
            return cls(mask, keep, hidden, restore, hidden, None, coords)
        if num_queries is None or num_predict is None:
            raise ValueError("queries need num_queries and num_predict")
        ids_query = split_ids(queries, num_queries)[1]
        pick = split_ids(torch.gather(mask, 1, ids_query), num_predict)[1]
        return cls(mask, keep, hidden, restore, ids_query, pick, coords)

    @classmethod
    def from_batch(cls, batch: dict[str, Any]) -> "MaskIndex":
        """From a :func:`omnimask.pipelines.loader.collate` batch (``mask``, ``num_hidden``; ``queries``,
        ``num_queries``, ``num_predict`` with a decoder masker; ``coords`` with token coordinates)."""
        return cls.from_mask(
            batch["mask"], batch["num_hidden"], batch.get("queries"), batch.get("num_queries"), batch.get("num_predict"),
            batch.get("coords"),
        )

    @property
    def ids_predict(self) -> torch.Tensor:
        """Positions ``[B, N_p]`` of the predicted tokens, ascending."""
        return self.ids_query if self.pick is None else torch.gather(self.ids_query, 1, self.pick)


class Encoder(nn.Module, ABC):
    """Sees the visible tokens: ``tokens [B, N, D]`` -> ``latent [B, L, E]``.

    ``dim`` is ``E``. What ``L`` covers (visible tokens, plus a cls token) is the
    encoder's choice; its head knows how to read it.
    """

    dim: int

    @abstractmethod
    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor: ...


class Head(nn.Module, ABC):
    """Decoder and loss: ``latent [B, L, E]`` -> predictions ``[B, N_p, D_t]`` for the tokens
    at ``index.ids_predict`` (the hidden tokens, or with a decoder masker the hidden
    tokens the decoder sees)."""

    @abstractmethod
    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor: ...

    @abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of predictions and targets ``[B, N_p, D_t]`` (predicted tokens only)."""
