"""ESM-2's checkpoint layout (facebookresearch/esm) for the ``esm`` encoder + ``lm_head`` recipes.

The reference model is ``esm.model.esm2.ESM2`` (``esm/model/esm2.py``); its ``state_dict()`` keys are:

================================================  ==============================================  ==========
omnimask (``MaskedModel.state_dict()``)           ESM-2 (``ESM2.state_dict()``)                    layout
================================================  ==============================================  ==========
``encoder.embed.weight``                          ``embed_tokens.weight``                          same
``encoder.blocks.N.norm1.*``                      ``layers.N.self_attn_layer_norm.*``              same
``encoder.blocks.N.attn.qkv.weight`` ``[3E, E]``  ``layers.N.self_attn.{q,k,v}_proj.weight``       rows split
                                                  ``[E, E]`` each                                  in q, k, v
``encoder.blocks.N.attn.qkv.bias`` ``[3E]``       ``layers.N.self_attn.{q,k,v}_proj.bias``         likewise
``encoder.blocks.N.attn.proj.*``                  ``layers.N.self_attn.out_proj.*``                same
(none: rotary tables are computed)                ``layers.N.self_attn.rot_emb.inv_freq``          buffer
``encoder.blocks.N.norm2.*``                      ``layers.N.final_layer_norm.*``                  same
``encoder.blocks.N.mlp.0.*``                      ``layers.N.fc1.*``                               same
``encoder.blocks.N.mlp.2.*``                      ``layers.N.fc2.*``                               same
``encoder.norm.*``                                ``emb_layer_norm_after.*``                       same
``head.dense.*``                                  ``lm_head.dense.*``                              same
``head.norm.*``                                   ``lm_head.layer_norm.*``                         same
``head.weight`` (tied to ``encoder.embed``)       ``lm_head.weight`` (tied to ``embed_tokens``)    same
``head.bias``                                     ``lm_head.bias``                                 same
(none)                                            ``contact_head.regression.{weight,bias}``        zeros
================================================  ==============================================  ==========

Within ``qkv`` the heads are contiguous blocks of ``E / H`` channels of each of q, k and v, as in
``esm/multihead_attention.py``, where ``q_proj(x)`` is viewed as ``[T, B * H, E / H]``: the split is a
plain cut of the rows. ``inv_freq`` (``esm/rotary_embedding.py``: ``1 / 10000^(2i / head_dim)``) is a
persistent buffer there; omnimask computes the same frequencies (``layers.rotary_tables``), so
``to_reference`` writes them and ``from_reference`` checks a checkpoint's against them and drops them.
omnimask trains no contact head (ESM fits it afterwards, by logistic regression on attention maps):
``to_reference`` gives the reference zeros, which load but predict nothing, and ``from_reference``
leaves it out.

The file: ``esm/pretrained.py`` (``load_model_and_alphabet_core`` -> ``_load_model_and_alphabet_core_v2``)
reads ``model_data["model"]``, a fairseq state dict whose keys carry the prefixes
``encoder.sentence_encoder.`` (trunk) or ``encoder.`` (``lm_head``) that its ``upgrade_state_dict``
strips, and ``model_data["cfg"]["model"]``, read by attribute (``encoder_layers``,
``encoder_embed_dim``, ``encoder_attention_heads``, ``token_dropout``): an ``argparse.Namespace``. The
released files hold the contact regression in a separate ``*-contact-regression.pt``, so :func:`wrap`
leaves it out of the model file, as they do (the loader then warns that contacts are not fitted).
``load_model_and_alphabet_core`` picks the ESM-2 path from the model name (``startswith("esm2")``):
save the file as ``esm2_*.pt``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import torch

from omnimask.weights.base import ReferenceLayout, State

# (omnimask suffix inside encoder.blocks.N, reference suffix inside layers.N), for the tensors kept whole
_BLOCK_KEYS = (
    ("norm1", "self_attn_layer_norm"),
    ("attn.proj", "self_attn.out_proj"),
    ("norm2", "final_layer_norm"),
    ("mlp.0", "fc1"),
    ("mlp.2", "fc2"),
)
_TOP_KEYS = (  # (omnimask module, reference module), outside the blocks
    ("encoder.embed", "embed_tokens"),
    ("encoder.norm", "emb_layer_norm_after"),
    ("head.dense", "lm_head.dense"),
    ("head.norm", "lm_head.layer_norm"),
)
_HEAD_PARAMS = (("head.weight", "lm_head.weight"), ("head.bias", "lm_head.bias"))
_PROJ = ("q_proj", "k_proj", "v_proj")
_TRUNK_PREFIX, _HEAD_PREFIX = "encoder.sentence_encoder.", "encoder."
_RELEASED_PREFIX = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")  # as upgrade_state_dict strips


def configs(recipe: Any) -> tuple[Any, Any]:
    """The recipe's encoder and head ``Config``s, validated and with their defaults filled in."""
    from omnimask.core import registry

    m = recipe.config.model
    if m.encoder.name != "esm" or m.head.name != "lm_head":
        raise ValueError(f"the ESM-2 layout maps the esm encoder + lm_head, not {m.encoder.name} + {m.head.name}")
    return registry.check("encoder", m.encoder)[1], registry.check("head", m.head)[1]


def sizes(recipe: Any) -> tuple[int, int, int]:
    """``(dim, depth, heads)`` of the recipe's ESM encoder (its size's, with the config's overrides)."""
    from omnimask.modalities.protein.model import ESM2_SIZES

    enc = configs(recipe)[0]
    dim, depth, heads = ESM2_SIZES[enc.size]
    return enc.dim or dim, enc.depth or depth, enc.heads or heads


def inv_freq(head_dim: int) -> torch.Tensor:
    """``RotaryEmbedding.inv_freq [head_dim / 2]`` as ``esm/rotary_embedding.py`` builds it."""
    return 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))


def check_supported(recipe: Any) -> None:
    """ESM-2 has rotary positions and ties its LM projection to the token embedding; other settings of the
    ``esm`` encoder have no place in its checkpoint."""
    enc, head = configs(recipe)
    if enc.positions != "rotary":
        raise ValueError("ESM-2 has rotary positions; a learned position table (positions: learned) has no place in it")
    if not head.tie:
        raise ValueError("ESM-2 ties lm_head.weight to embed_tokens.weight; an untied head (tie: false) has no place in it")
    if enc.mlp_ratio != 4.0:
        raise ValueError(f"ESM-2's feed-forward width is 4 x embed_dim, got mlp_ratio {enc.mlp_ratio}")


def to_reference(state: State, recipe: Any) -> State:
    """omnimask's ``MaskedModel.state_dict()`` -> ``ESM2.state_dict()`` (see the module's table)."""
    check_supported(recipe)
    dim, depth, heads = sizes(recipe)
    left = dict(state)
    out: State = {}

    def move(ours: str, theirs: str) -> None:
        for leaf in ("weight", "bias"):
            if f"{ours}.{leaf}" in left:
                out[f"{theirs}.{leaf}"] = left.pop(f"{ours}.{leaf}")

    for ours, theirs in _TOP_KEYS:
        move(ours, theirs)
    for ours, theirs in _HEAD_PARAMS:
        out[theirs] = left.pop(ours)
    for n in range(depth):
        src, dst = f"encoder.blocks.{n}", f"layers.{n}"
        for ours, theirs in _BLOCK_KEYS:
            move(f"{src}.{ours}", f"{dst}.{theirs}")
        for leaf in ("weight", "bias"):
            for proj, part in zip(_PROJ, left.pop(f"{src}.attn.qkv.{leaf}").chunk(3, dim=0)):
                out[f"{dst}.self_attn.{proj}.{leaf}"] = part.clone()
        out[f"{dst}.self_attn.rot_emb.inv_freq"] = inv_freq(dim // heads)
    if left:
        raise ValueError(f"keys with no place in ESM-2's layout: {sorted(left)}")
    out["contact_head.regression.weight"] = torch.zeros(1, depth * heads)
    out["contact_head.regression.bias"] = torch.zeros(1)
    return out


def from_reference(state: State, recipe: Any) -> State:
    """``ESM2.state_dict()`` (or any part of it, e.g. its parameters' gradients) -> omnimask's keys.
    ``contact_head.*`` and the ``inv_freq`` buffers are left out (the latter checked against omnimask's
    frequencies first); q, k and v are joined only where all three are present."""
    check_supported(recipe)
    dim, depth, heads = sizes(recipe)
    out: State = {}

    def move(theirs: str, ours: str) -> None:
        for leaf in ("weight", "bias"):
            if f"{theirs}.{leaf}" in state:
                out[f"{ours}.{leaf}"] = state[f"{theirs}.{leaf}"]

    for ours, theirs in _TOP_KEYS:
        move(theirs, ours)
    for ours, theirs in _HEAD_PARAMS:
        if theirs in state:
            out[ours] = state[theirs]
    for n in range(depth):
        src, dst = f"layers.{n}", f"encoder.blocks.{n}"
        for ours, theirs in _BLOCK_KEYS:
            move(f"{src}.{theirs}", f"{dst}.{ours}")
        for leaf in ("weight", "bias"):
            parts = [state.get(f"{src}.self_attn.{proj}.{leaf}") for proj in _PROJ]
            if all(p is not None for p in parts):
                out[f"{dst}.attn.qkv.{leaf}"] = torch.cat(parts, dim=0)
        freq = state.get(f"{src}.self_attn.rot_emb.inv_freq")
        if freq is not None and not torch.allclose(freq.float(), inv_freq(dim // heads), rtol=1e-6, atol=0):
            raise ValueError(
                f"{src}.self_attn.rot_emb.inv_freq differs from ESM-2's rotary frequencies for "
                f"head_dim {dim // heads}: omnimask computes those and cannot hold others"
            )
    return out


def wrap(state: State, recipe: Any) -> dict[str, Any]:
    """A reference state dict -> the object of a released ESM-2 file, as ``esm.pretrained`` loads it:
    ``{"model": fairseq-prefixed state dict (no contact head), "cfg": {"model": Namespace(...)}}``.

    The ``cfg`` holds an ``argparse.Namespace`` because ESM's loader reads it by attribute: loading the
    file with ``torch.load(weights_only=True)`` needs ``torch.serialization.add_safe_globals([argparse.Namespace])``.
    """
    dim, depth, heads = sizes(recipe)
    model = {
        (_HEAD_PREFIX if k.startswith("lm_head.") else _TRUNK_PREFIX) + k: v for k, v in state.items() if not k.startswith("contact_head.")
    }
    cfg = argparse.Namespace(
        encoder_layers=depth,
        encoder_embed_dim=dim,
        encoder_attention_heads=heads,
        encoder_ffn_embed_dim=4 * dim,
        token_dropout=bool(configs(recipe)[0].token_dropout),
    )
    return {"model": model, "cfg": {"model": cfg}}


def unwrap(obj: Any) -> State:
    """The reference state dict inside a released ESM-2 file (``{"model": prefixed keys, "cfg": ...}``),
    its ``*-contact-regression.pt`` (``{"model": contact_head keys}``), or a plain ``ESM2.state_dict()``;
    the fairseq prefixes are stripped as ``esm.pretrained`` strips them."""
    inner = obj.get("model") if isinstance(obj, dict) else None
    state = inner if isinstance(inner, dict) else obj
    return {_RELEASED_PREFIX.sub("", k): v for k, v in state.items()}


LAYOUT = ReferenceLayout(
    name="esm2",
    repo="facebookresearch/esm",
    to_reference=to_reference,
    from_reference=from_reference,
    wrap=wrap,
    unwrap=unwrap,
)
