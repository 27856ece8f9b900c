"""Point-MAE's checkpoint layout (Pang-Yatian/Point-MAE), for the ``pointmae`` encoder and ``pointmae_decoder`` head.

The reference model is ``Point_MAE`` in ``models/Point_MAE.py``; its training script saves
``{"base_model": model.state_dict(), "optimizer": ..., "epoch": ..., ...}`` (``tools/builder.py``,
``save_checkpoint``) and reads ``state["base_model"]`` (or ``state["model"]``) back with any ``module.``
prefix of a ``DistributedDataParallel`` model removed (``load_model``).

omnimask key -> reference key (layout):

- ``encoder.embed.first.{0,1,3}.*`` -> ``MAE_encoder.encoder.first_conv.{0,1,3}.*`` (Conv1d k=1 weights
  ``[out, in, 1]`` in both; the BatchNorm's running statistics and ``num_batches_tracked`` included)
- ``encoder.embed.second.{0,1,3}.*`` -> ``MAE_encoder.encoder.second_conv.{0,1,3}.*``
- ``encoder.pos.{0,2}.*`` -> ``MAE_encoder.pos_embed.{0,2}.*``
- ``encoder.blocks.N.{B}`` -> ``MAE_encoder.blocks.blocks.N.{B'}``
- ``encoder.norm.*`` -> ``MAE_encoder.norm.*``
- ``head.mask_token`` ``[1, 1, D]`` -> ``mask_token``
- ``head.pos.{0,2}.*`` -> ``decoder_pos_embed.{0,2}.*``
- ``head.blocks.N.{B}`` -> ``MAE_decoder.blocks.N.{B'}``
- ``head.norm.*`` -> ``MAE_decoder.norm.*``
- ``head.pred.weight`` ``[3S, D]`` -> ``increase_dim.0.weight`` ``[3S, D, 1]`` (a Linear against a Conv1d k=1);
  ``head.pred.bias`` -> ``increase_dim.0.bias``

where a block's ``{B} -> {B'}`` is ``norm1``, ``attn.qkv.weight`` (no bias: the reference's ``qkv_bias=False``),
``attn.proj``, ``norm2``, ``mlp.0 -> mlp.fc1``, ``mlp.2 -> mlp.fc2``. A predicted group's ``3S`` values are
(point, coordinate) in both (``rebuild_points.reshape(B * M, -1, 3)``), so nothing is permuted.

The reference has no place for q/k/v biases, a head ``embed`` (its decoder runs at the encoder's width) or
any other omnimask key: :func:`to_reference` refuses such a state; :func:`from_reference` leaves out the
reference keys it does not know.
"""

from __future__ import annotations

import re
from typing import Any

from omnimask.weights.base import ReferenceLayout, State, without_ddp_prefix

_BLOCK = {"norm1": "norm1", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj", "norm2": "norm2", "mlp.0": "mlp.fc1", "mlp.2": "mlp.fc2"}
"""A transformer block's modules: omnimask's name -> the reference's."""

_MODULES = {
    "encoder.embed.first": "MAE_encoder.encoder.first_conv",
    "encoder.embed.second": "MAE_encoder.encoder.second_conv",
    "encoder.pos": "MAE_encoder.pos_embed",
    "encoder.norm": "MAE_encoder.norm",
    "head.pos": "decoder_pos_embed",
    "head.norm": "MAE_decoder.norm",
    "head.pred": "increase_dim.0",
}
"""Modules outside the blocks: omnimask's name -> the reference's."""

_STACKS = {"encoder.blocks": "MAE_encoder.blocks.blocks", "head.blocks": "MAE_decoder.blocks"}
_TENSORS = {"head.mask_token": "mask_token"}
_NO_PLACE = ("attn.qkv.bias",)
"""Tensor names the reference model does not hold (its attention is built with ``qkv_bias=False``)."""


def _rename(key: str, *, to_reference: bool) -> str | None:
    """``key`` in the other layout, or None where that layout has no such tensor."""
    if any(key.endswith(suffix) for suffix in _NO_PLACE):
        return None
    tensors = _TENSORS if to_reference else {v: k for k, v in _TENSORS.items()}
    if key in tensors:
        return tensors[key]
    stacks = _STACKS if to_reference else {v: k for k, v in _STACKS.items()}
    block = _BLOCK if to_reference else {v: k for k, v in _BLOCK.items()}
    for src, dst in stacks.items():
        m = re.fullmatch(re.escape(src) + r"\.(\d+)\.(.+)\.(weight|bias)", key)
        if m and m.group(2) in block:
            return f"{dst}.{m.group(1)}.{block[m.group(2)]}.{m.group(3)}"
    modules = _MODULES if to_reference else {v: k for k, v in _MODULES.items()}
    for src, dst in modules.items():
        if key.startswith(src + "."):
            return dst + key[len(src) :]
    return None


def to_reference(state: State, recipe: Any = None) -> State:
    """omnimask's ``MaskedModel.state_dict()`` -> ``Point_MAE.state_dict()`` (every tensor, BatchNorm
    running statistics included). ValueError for a key the reference has no place for."""
    out: State = {}
    for key, value in state.items():
        name = _rename(key, to_reference=True)
        if name is None:
            raise ValueError(
                f"{key} has no place in Point-MAE's layout (the reference's attention has no q/k/v "
                "bias and its decoder runs at the encoder's width, without an embedding)"
            )
        out[name] = value.unsqueeze(-1) if key == "head.pred.weight" else value
    return out


def from_reference(state: State, recipe: Any = None) -> State:
    """``Point_MAE.state_dict()`` (or any part of it, e.g. its parameters' gradients) -> omnimask's keys;
    reference keys omnimask has no place for are left out."""
    out: State = {}
    for key, value in state.items():
        name = _rename(key, to_reference=False)
        if name is not None:
            out[name] = value.squeeze(-1) if key == "increase_dim.0.weight" else value
    return out


def wrap(state: State, recipe: Any = None) -> dict[str, Any]:
    """What ``tools/builder.py``'s ``save_checkpoint`` writes, less the optimizer's state and the metrics."""
    return {"base_model": state}


def unwrap(obj: Any) -> State:
    """The reference state dict of a Point-MAE checkpoint, as ``tools/builder.py``'s ``load_model`` reads it:
    ``obj["model"]`` or ``obj["base_model"]``, with a ``DistributedDataParallel`` ``module.`` prefix removed."""
    if isinstance(obj, dict) and obj.get("model") is not None:
        obj = obj["model"]
    elif isinstance(obj, dict) and obj.get("base_model") is not None:
        obj = obj["base_model"]
    return without_ddp_prefix(obj)


LAYOUT = ReferenceLayout(
    name="pointmae",
    repo="Pang-Yatian/Point-MAE",
    to_reference=to_reference,
    from_reference=from_reference,
    wrap=wrap,
    unwrap=unwrap,
)

__all__ = ["LAYOUT", "from_reference", "to_reference", "unwrap", "wrap"]
