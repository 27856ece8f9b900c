"""How a recipe's weights map onto a reference repository's own checkpoint layout.

Each reference family (MAE/AudioMAE, VideoMAE, Point-MAE, GraphMAE, ESM-2) has one module in
this package that defines a :class:`ReferenceLayout`: two pure functions between omnimask's
``MaskedModel.state_dict()`` and the reference code's ``model.state_dict()`` (key names, tensor
layouts such as a ``Linear`` patch embedding against the reference's ``Conv2d``), and how the
reference wraps that state dict in its checkpoint file (MAE: ``{"model": state_dict}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ReferenceLayout:
    """The reference layout of one family of recipes.

    - ``to_reference(state, recipe) -> state``: omnimask's ``MaskedModel.state_dict()`` -> the reference
      model's ``state_dict()``, every tensor the reference model holds (buffers it persists included).
    - ``from_reference(state, recipe) -> state``: the inverse, for the keys it knows; keys of the reference
      that omnimask has no place for are left out (the caller reports them as unexpected).
    - ``wrap(state, recipe) -> object``: the object the reference's training script saves
      (``torch.save``-able, tensors, str, int, float, lists and dicts only, loadable with
      ``weights_only=True``; ESM-2's config is an ``argparse.Namespace``, as ESM's loader reads it, which
      :func:`omnimask.weights.load_reference_file` allows).
    - ``unwrap(obj) -> state``: the reference state dict inside such an object (also accepting the
      forms the released checkpoints have, e.g. a prefix on every key).
    - ``repo``: the reference repository, for messages and docs.
    """

    name: str
    repo: str
    to_reference: Callable[[State, Any], State]
    from_reference: Callable[[State, Any], State]
    wrap: Callable[[State, Any], Any]
    unwrap: Callable[[Any], State]


def without_ddp_prefix(state: dict[str, Any]) -> State:
    """``state`` with the ``module.`` prefix removed where every key has it (a model saved through
    (Distributed)DataParallel, as the references' scripts sometimes do)."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)
