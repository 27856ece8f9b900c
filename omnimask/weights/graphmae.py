"""GraphMAE's checkpoint layout (THUDM/GraphMAE, ``graphmae/models/edcoder.py`` ``PreModel``).

GraphMAE saves ``model.state_dict()`` as it is (``main_graph.py``, ``main_transductive.py``:
``torch.save(model.state_dict(), "checkpoint.pt")``). Its keys, against omnimask's
``MaskedModel.state_dict()`` (no tensor changes layout: PyG's and GraphMAE's DGL-style layers hold the same
shapes, ``[heads * C, in]`` projections and ``[1, heads, C]`` attention vectors):

- ``encoder.mask_token`` -> ``enc_mask_token``; ``head.to_decoder.weight`` -> ``encoder_to_decoder.weight``.
- GIN (``gin.py``), encoder layer ``i`` -> ``encoder.layers.i``: ``eps`` -> ``eps``; ``nn.0`` (Linear),
  ``nn.1`` (BatchNorm), ``nn.2`` (PReLU), ``nn.3`` (Linear) -> ``apply_func.mlp.linears.0``,
  ``apply_func.mlp.norms.0``, ``apply_func.mlp.activations.0``, ``apply_func.mlp.linears.1``;
  ``encoder.gnn.post.i.0`` (BatchNorm) -> ``apply_func.norm``, ``encoder.gnn.post.i.1`` (PReLU) -> ``apply_func.act``.
- GIN decoder ``head.decoder.layers.0`` -> ``decoder.layers.0``: ``eps``; ``nn.{0,1,2,3}`` ->
  ``apply_func.{linears.0, norms.0, activations.0, linears.1}`` (its MLP is not wrapped in ``ApplyNodeFunc``).
- GAT (``gat.py``), encoder layer ``i`` -> ``encoder.gat_layers.i``: ``lin.weight`` -> ``fc.weight``,
  ``att_src`` -> ``attn_l``, ``att_dst`` -> ``attn_r``, ``bias`` -> ``bias``; ``encoder.gnn.post.i.0`` (PReLU)
  -> ``encoder.gat_layers.i.activation``.
- GAT decoder ``head.decoder.layers.0`` -> ``decoder.gat_layers.0``, the same names (no activation).

BatchNorm buffers (``running_mean``, ``running_var``, ``num_batches_tracked``) travel under the same
renaming. GraphMAE's one-layer GAT encoder has no activation (``gat.py`` ``GAT.__init__``), so omnimask's
``encoder.gnn.post.0.0`` of a one-layer GAT encoder has no place there (:func:`to_reference` refuses it).
"""

from __future__ import annotations

from typing import Any

import torch

from omnimask.weights.base import ReferenceLayout, State, without_ddp_prefix

Pairs = list[tuple[str, str]]
"""``(omnimask name, GraphMAE name)``: a whole key, or a module prefix of keys (``name.`` + the rest)."""

_GIN_MLP = ("linears.0", "norms.0", "activations.0", "linears.1")
"""GraphMAE's ``MLP(2, ...)`` submodules, in the order of omnimask's ``nn.Sequential`` 0-3."""


def _configs(recipe: Any) -> tuple[Any, Any]:
    from omnimask.core import registry

    model = recipe.config.model
    return (registry.check("encoder", model.encoder, "model.encoder")[1], registry.check("head", model.head, "model.head")[1])


def _gin_layer(ours: str, theirs: str, mlp: str) -> Pairs:
    """One GIN layer: ``mlp`` is where GraphMAE keeps the 2-layer MLP under the layer (``apply_func.mlp`` when an
    ``ApplyNodeFunc`` wraps it, ``apply_func`` for a decoder's bare MLP)."""
    mlp_pairs = [(f"{ours}.nn.{j}", f"{theirs}.{mlp}.{name}") for j, name in enumerate(_GIN_MLP)]
    return [(f"{ours}.eps", f"{theirs}.eps"), *mlp_pairs]


def _gat_layer(ours: str, theirs: str) -> Pairs:
    return [
        (f"{ours}.lin", f"{theirs}.fc"),
        (f"{ours}.att_src", f"{theirs}.attn_l"),
        (f"{ours}.att_dst", f"{theirs}.attn_r"),
        (f"{ours}.bias", f"{theirs}.bias"),
    ]


def pairs(recipe: Any) -> Pairs:
    """Every name pair of ``recipe``'s model (the table in the module docstring)."""
    enc, head = _configs(recipe)
    out: Pairs = [("encoder.mask_token", "enc_mask_token"), ("head.to_decoder", "encoder_to_decoder")]
    for i in range(enc.depth):
        if enc.kind == "gin":
            theirs = f"encoder.layers.{i}"
            out += _gin_layer(f"encoder.gnn.layers.{i}", theirs, "apply_func.mlp")
            out += [(f"encoder.gnn.post.{i}.0", f"{theirs}.apply_func.norm"), (f"encoder.gnn.post.{i}.1", f"{theirs}.apply_func.act")]
        else:
            theirs = f"encoder.gat_layers.{i}"
            out += _gat_layer(f"encoder.gnn.layers.{i}", theirs)
            if enc.depth > 1:
                out.append((f"encoder.gnn.post.{i}.0", f"{theirs}.activation"))
    if head.kind == "gin":
        out += _gin_layer("head.decoder.layers.0", "decoder.layers.0", "apply_func")
    else:
        out += _gat_layer("head.decoder.layers.0", "decoder.gat_layers.0")
    return out


def _rename(state: State, table: Pairs) -> tuple[State, list[str]]:
    """``state`` with each key renamed by the first pair that matches it (whole or as a prefix), and the keys
    no pair matches."""
    out: State = {}
    unmatched = []
    for key, value in state.items():
        for src, dst in table:
            if key == src or key.startswith(src + "."):
                out[dst + key[len(src) :]] = value
                break
        else:
            unmatched.append(key)
    return out, unmatched


def to_reference(state: State, recipe: Any) -> State:
    """omnimask's ``MaskedModel.state_dict()`` -> ``PreModel.state_dict()`` (the same tensors, renamed)."""
    out, unmatched = _rename(state, pairs(recipe))
    if unmatched:
        raise ValueError(f"GraphMAE's PreModel has no place for {unmatched}")
    return out


def from_reference(state: State, recipe: Any) -> State:
    """``PreModel``'s state dict (or any part of it, e.g. its parameters' gradients) -> omnimask's names; keys
    omnimask has no place for are left out."""
    return _rename(state, [(theirs, ours) for ours, theirs in pairs(recipe)])[0]


def wrap(state: State, recipe: Any) -> dict[str, torch.Tensor]:
    """What GraphMAE's scripts save: the state dict itself."""
    return dict(state)


def unwrap(obj: Any) -> State:
    """A GraphMAE checkpoint's state dict: the object itself, or under ``model``/``state_dict`` where another
    script wrapped it; a DataParallel ``module.`` prefix is dropped."""
    for key in ("model", "state_dict"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    return without_ddp_prefix(obj)


LAYOUT = ReferenceLayout(
    name="graphmae", repo="THUDM/GraphMAE", to_reference=to_reference, from_reference=from_reference, wrap=wrap, unwrap=unwrap
)
