"""The plain, paper-style counterpart of a recipe's model: the baseline of the training-step benchmark.

Each is written the way its paper's code is: the mask drawn inside the model
where the paper does it there, attention computed explicitly, decoders and heads
run over every token, the loss weighted or indexed by the mask. Each names its
parameters as omnimask's model does, so ``load_state_dict(model.state_dict())``
gives it the same weights. :meth:`Reference.args` turns a loader batch into its
inputs, the way its own data pipeline would give them. With ``same_mask`` it
passes the batch's own mask instead, and the reference then computes omnimask's
loss: ``benchmarks.train_step.equal_loss`` checks this for every recipe timed,
in eval mode, because dropout and batch statistics differ between the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import nn

from omnimask.models.recipe import Recipe


class Reference(nn.Module, ABC):
    """``forward(*args(batch)) -> scalar loss``."""

    @abstractmethod
    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[Any, ...]:
        """The reference's inputs from a loader batch. Without ``same_mask`` the reference draws its own mask
        where its paper's code does; with it, the batch's mask is used."""


def reference_for(recipe: Recipe) -> Reference | None:
    """The plain counterpart of ``recipe``'s model, or None where there is none (a combination of parts
    no paper wrote)."""
    m = recipe.config.model
    parts = (m.encoder.name, m.head.name, m.masker.name)
    if m.decoder_masker is not None or getattr(m, "edge_masker", None) is not None:
        return None
    if parts[:2] == ("vit", "mae_decoder") and parts[2] in ("random", "tube"):
        from benchmarks.reference_mae import plain_mae

        return plain_mae(recipe)
    if parts == ("pointmae", "pointmae_decoder", "random"):
        from benchmarks.reference_pointmae import PlainPointMAE

        return PlainPointMAE(recipe)
    if parts == ("esm", "lm_head", "bert"):
        from benchmarks.reference_esm import PlainESM

        return PlainESM(recipe)
    if parts == ("gnn", "graphmae_decoder", "graphmae"):
        from benchmarks.reference_graphmae import PlainGraphMAE

        return PlainGraphMAE(recipe)
    return None
