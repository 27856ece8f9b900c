"""Encoder, Head and Loss interfaces: the model-side pieces of a recipe."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from omnimask.core.config import ComponentSpec
from omnimask.core.indexing import split_ids


@dataclass
class MaskIndex:
    """Index views of a batch's masks, computed once per step and shared by encoder and head.

    - ``mask [B, N]``: True = hidden (predicted); ``ids_keep [B, N_v]``,
      ``ids_hidden [B, N_h]``, ``ids_restore [B, N]`` (see
      :func:`omnimask.core.indexing.split_ids`), for grid batches, where every
      sample hides the same number of tokens (None in padded batches).
    - ``ids_query [B, N_q]``: the positions the decoder gets a query (mask token)
      for, ascending. Without a decoder masker these are the hidden tokens (MAE).
      With one (VideoMAE V2's dual masking) they are the positions the decoder
      masker leaves visible, hidden from the encoder or not.
    - ``pick [B, N_p]`` (or None when every query is predicted): which queries are
      predicted and in the loss, the hidden ones. ``ids_predict`` are their positions.
    - ``coords [B, N, C]`` (or None for grid tokens): the tokens' positions in the data
      (point-cloud group centres), for encoders and heads that embed positions from data.
    - ``valid [B, N]`` (padded batches of variable-length tokens): True at real tokens.
    - ``num_valid``, ``num_masked`` (padded batches): ``valid.sum()`` and ``mask.sum()``, known on the
      host (the collate's count; the rows of the concatenated target), so that selecting those rows
      needs no device read-back and ``torch.compile`` traces it (:func:`omnimask.core.indexing.select_rows`).
    - ``mask_token [B, N]`` (maskers that show the encoder every token): where the
      encoder puts its [MASK] in place of the (corrupted) token.
    - ``edges [2, E]`` (graphs): token pairs as indices into ``tokens[valid]``;
      ``edge_hidden [E]`` (with an edge masker): the edges hidden from the encoder, and
      ``encoder_edges [2, E_v]`` the others, the graph the encoder sees (selected by the collate
      on the host, else here); ``loop_free``: whether ``edges`` holds no self-loop (known on the
      host: GAT layers then add theirs without a data-dependent selection; None: unknown). It is
      trusted: whoever changes ``edges`` after the collate sets it again.
    """

    mask: torch.Tensor
    ids_keep: Optional[torch.Tensor] = None
    ids_hidden: Optional[torch.Tensor] = None
    ids_restore: Optional[torch.Tensor] = None
    ids_query: Optional[torch.Tensor] = None
    pick: Optional[torch.Tensor] = None
    coords: Optional[torch.Tensor] = None
    valid: Optional[torch.Tensor] = None
    mask_token: Optional[torch.Tensor] = None
    edges: Optional[torch.Tensor] = None
    edge_hidden: Optional[torch.Tensor] = None
    encoder_edges: Optional[torch.Tensor] = None
    loop_free: Optional[bool] = None
    num_valid: Optional[int] = None
    num_masked: Optional[int] = None

    @classmethod
    def from_mask(
        cls,
        mask: torch.Tensor,
        num_hidden: Optional[int],
        queries: Optional[torch.Tensor] = None,
        num_queries: Optional[int] = None,
        num_predict: Optional[int] = None,
        **extra: Any,
    ) -> "MaskIndex":
        """``num_hidden`` None (padded batches): no gather indices. ``extra``: ``coords``, ``valid``,
        ``mask_token``, ``edges``, ``edge_hidden``, ``encoder_edges``, ``loop_free``, ``num_valid``,
        ``num_masked``."""
        if extra.get("edge_hidden") is not None and extra.get("encoder_edges") is None:
            extra["encoder_edges"] = extra["edges"][:, ~extra["edge_hidden"]]
        if num_hidden is None:
            return cls(mask, **extra)
        keep, hidden, restore = split_ids(mask, num_hidden)
        if queries is None:
            return cls(mask, keep, hidden, restore, hidden, None, **extra)
        if num_queries is None or num_predict is None:
            raise ValueError("queries need num_queries and num_predict")
        ids_query = split_ids(queries, num_queries)[1]
        pick = split_ids(torch.gather(mask, 1, ids_query), num_predict)[1]
        return cls(mask, keep, hidden, restore, ids_query, pick, **extra)

    @classmethod
    def from_batch(cls, batch: dict[str, Any]) -> "MaskIndex":
        """From a :func:`omnimask.core.collate.collate` batch."""
        names = ("coords", "valid", "mask_token", "edges", "edge_hidden", "encoder_edges", "loop_free", "num_valid")
        extra = {name: batch.get(name) for name in names}
        if "valid" in batch and "target" in batch:
            extra["num_masked"] = batch["target"].shape[0]
        return cls.from_mask(
            batch["mask"], batch["num_hidden"], batch.get("queries"), batch.get("num_queries"), batch.get("num_predict"), **extra
        )

    @property
    def ids_predict(self) -> torch.Tensor:
        """Positions ``[B, N_p]`` of the predicted tokens, ascending (grid batches)."""
        if self.ids_query is None:
            raise ValueError("padded batches have no per-row token indices; select with index.mask")
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
    """Decoder: ``latent [B, L, E]`` -> predictions ``[B, N_p, D_t]`` for the tokens
    at ``index.ids_predict`` (the hidden tokens, or with a decoder masker the hidden
    tokens the decoder sees). In padded batches: ``[M, D_t]`` for the ``M`` hidden tokens
    in row-major order (``index.mask``), as the targets are concatenated. The predictions
    go to the recipe's :class:`Loss` (``model.loss``, by default the head's :attr:`default_loss`)."""

    default_loss: ClassVar[Optional[ComponentSpec]] = None
    """The loss (registry name and parameters) a recipe without ``model.loss`` trains this head with:
    its reference method's. None: the recipe must name one."""

    @classmethod
    def loss_for(cls, cfg: Any) -> Optional[ComponentSpec]:
        """The default loss of this head built with ``cfg`` (its validated ``Config``; None for a head
        without one): a copy of :attr:`default_loss`. A head whose config sets a loss parameter (GraphMAE's
        ``gamma``, where its recipes set it) overrides this to pass it on."""
        spec = cls.default_loss
        return None if spec is None else ComponentSpec(spec.name, dict(spec.params))

    def bind(self, encoder: Encoder) -> None:
        """Called once when the model is built, for heads that share the encoder's weights
        (a language-model head tied to the token embedding)."""

    @abstractmethod
    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor: ...


class Loss(nn.Module, ABC):
    """Scalar loss of a head's predictions and the finalized targets, over the predicted tokens only.

    Grid batches: ``pred [B, N_p, D_t]`` and ``target [B, N_p, D_t]``; padded batches: ``[M, D_t]`` and
    ``[M, D_t]`` for the ``M`` hidden tokens in row-major order. Class-id targets (``token_ids``) have no
    ``D_t``: ``target [B, N_p]`` / ``[M]`` against logits ``pred [B, N_p, V]`` / ``[M, V]``. Built from
    ``model.loss`` (registry kind ``loss``), or from the head's :attr:`Head.default_loss`.
    """

    is_sample_mean: ClassVar[bool] = False
    """Whether the loss of a grid batch is the mean of equal per-sample terms: every sample predicts the same
    number of tokens (grid batches do) and each sample's terms count alike, whatever the targets hold. Then a
    batch's loss is the size-weighted mean of its parts' losses, which ``trainer.cpu_batch_parts``
    (:mod:`omnimask.train.batch_parts`) needs; a loss that does not declare it is refused there."""

    @abstractmethod
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...
