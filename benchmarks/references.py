"""The reference counterpart of a recipe's model: the baseline of the training-step benchmark and of the
fidelity checks (:mod:`benchmarks.fidelity`).

Each is written from its reference repository's code (the file and function each piece follows are in
its module docstring and in docs/recipes.md), with the reference's own parameter names: MAE and AudioMAE
(:mod:`benchmarks.reference_mae`), VideoMAE (:mod:`benchmarks.reference_videomae`), Point-MAE, GraphMAE
and ESM-2 beside them. ``from_model(recipe, model)`` builds one at the recipe's sizes and loads the
model's weights through the recipe's reference layout (:mod:`omnimask.weights`), the same mapping
``omnimask export --format reference`` writes, so a wrong key or layout shows up as a difference.
:meth:`Reference.args` turns a loader batch into its inputs, the way its own data pipeline would
give them; with ``same_mask`` it passes the batch's own mask (and corruption) instead of drawing one.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Optional

from torch import nn

from omnimask.core.recipe import MaskedModel, Recipe


class Reference(nn.Module, ABC):
    """``forward(*args(batch)) -> scalar loss``; ``outputs(*args) -> (loss, predictions of the hidden tokens
    [M, D_t], rows ordered by sample, then token position)``; ``layout``: the recipe's reference layout."""

    layout: Any

    @classmethod
    @abstractmethod
    def from_model(cls, recipe: Recipe, model: MaskedModel) -> "Reference":
        """The reference model at ``recipe``'s sizes, holding ``model``'s weights."""

    @abstractmethod
    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[Any, ...]:
        """The reference's inputs from a loader batch. Without ``same_mask`` the reference draws its own mask
        where its code does; with it, the batch's mask is used."""

    @abstractmethod
    def outputs(self, *args: Any) -> tuple[Any, Any]: ...

    def forward(self, *args: Any) -> Any:
        return self.outputs(*args)[0]


def _maker(recipe: Recipe) -> Optional[type[Reference]]:
    """The reference class of ``recipe``'s model, or None for a combination of parts no reference wrote."""
    from omnimask.weights import family_of

    m = recipe.config.model
    if m.decoder_masker is not None or m.edge_masker is not None:
        return None
    family = family_of(recipe)
    maskers = {
        "mae": ("random",),
        "videomae": ("tube",),
        "pointmae": ("random", "point_block"),
        "graphmae": ("graphmae",),
        "esm": ("bert",),
    }
    if family is None or m.masker.name not in maskers[family]:
        return None
    module = importlib.import_module(f"benchmarks.reference_{family}")
    return module.BASELINE


def has_reference(recipe: Recipe) -> bool:
    return _maker(recipe) is not None


def reference_for(recipe: Recipe, model: MaskedModel) -> Reference:
    """The reference counterpart of ``model`` (built from ``recipe``), sized as it and holding its weights."""
    make = _maker(recipe)
    if make is None:
        m = recipe.config.model
        raise ValueError(f"no reference counterpart for {m.encoder.name} + {m.head.name} + {m.masker.name}")
    return make.from_model(recipe, model)
