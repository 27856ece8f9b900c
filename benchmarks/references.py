"""The plain, paper-style counterpart of a recipe's model: the baseline of the training-step benchmark.

Each is written the way its paper's code is: the mask drawn inside the model
where the paper does it there, transformer attention computed explicitly,
decoders and heads run over every token, the loss weighted or indexed by the
mask. Each names its
parameters as omnimask's model does, so ``load_state_dict(model.state_dict())``
gives it the same weights. :meth:`Reference.args` turns a loader batch into its
inputs, the way its own data pipeline would give them. With ``same_mask`` it
passes the batch's own mask instead, and the reference then computes omnimask's
loss: ``benchmarks.train_step.equal_loss`` checks this for every recipe timed,
in eval mode, because dropout and batch statistics differ between the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Optional

from torch import nn

from omnimask.models.recipe import MaskedModel, Recipe


class Reference(nn.Module, ABC):
    """``forward(*args(batch)) -> scalar loss``."""

    @abstractmethod
    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[Any, ...]:
        """The reference's inputs from a loader batch. Without ``same_mask`` the reference draws its own mask
        where its paper's code does; with it, the batch's mask is used."""


def _maker(recipe: Recipe) -> Optional[Callable[[Recipe, MaskedModel], Reference]]:
    """The constructor of ``recipe``'s plain counterpart, or None for a combination of parts no paper wrote."""
    m = recipe.config.model
    if m.decoder_masker is not None or m.edge_masker is not None:
        return None
    parts = (m.encoder.name, m.head.name, m.masker.name)
    if parts[:2] == ("vit", "mae_decoder") and parts[2] in ("random", "tube"):
        from benchmarks.reference_mae import plain_mae

        return plain_mae
    if parts == ("pointmae", "pointmae_decoder", "random"):
        from benchmarks.reference_pointmae import PlainPointMAE

        return PlainPointMAE
    if parts == ("esm", "lm_head", "bert"):
        from benchmarks.reference_esm import PlainESM

        return PlainESM
    if parts == ("gnn", "graphmae_decoder", "graphmae"):
        from benchmarks.reference_graphmae import PlainGraphMAE

        return PlainGraphMAE
    return None


def has_reference(recipe: Recipe) -> bool:
    return _maker(recipe) is not None


def reference_for(recipe: Recipe, model: MaskedModel) -> Reference:
    """The plain counterpart of ``model`` (built from ``recipe``), sized as it and holding its weights."""
    make = _maker(recipe)
    if make is None:
        m = recipe.config.model
        raise ValueError(f"no plain counterpart for {m.encoder.name} + {m.head.name} + {m.masker.name}")
    plain = make(recipe, model)
    plain.load_state_dict(model.state_dict())
    return plain
