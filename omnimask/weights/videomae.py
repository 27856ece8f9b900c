"""VideoMAE's checkpoint layout (MCG-NJU/VideoMAE, ``modeling_pretrain.py``: ``PretrainVisionTransformer``).

The reference model's ``state_dict()`` holds::

    encoder.patch_embed.proj.{weight [E, 3, t, p, p], bias [E]}     Conv3d over tubelets (PatchEmbed)
    encoder.blocks.N.norm1.{weight, bias}                          Block (modeling_finetune.py)
    encoder.blocks.N.attn.qkv.weight [3E, E]                       Attention: a bias-free Linear, and
    encoder.blocks.N.attn.{q_bias, v_bias} [E]                     the q and v biases apart (k has none)
    encoder.blocks.N.attn.proj.{weight, bias}
    encoder.blocks.N.norm2.{weight, bias}
    encoder.blocks.N.mlp.{fc1, fc2}.{weight, bias}                 Mlp
    encoder.norm.{weight, bias}
    encoder_to_decoder.weight [D, E]                               Linear(bias=False)
    mask_token [1, 1, D]
    decoder.blocks.N.*                                             as the encoder's blocks
    decoder.norm.{weight, bias}
    decoder.head.{weight, bias} [3 t p p, D]

and nothing else: both position tables (``encoder.pos_embed``, ``pos_embed``) are plain tensor attributes
built by ``get_sinusoid_encoding_table``, not buffers, and ``encoder.head`` is an ``nn.Identity``
(``encoder_num_classes=0``). The training script saves ``{"model": state_dict, "optimizer": ..., "epoch": ...,
"scaler": ..., "args": ...}`` (``utils.save_model``); the released pretraining checkpoints hold ``{"model": ...}``,
and ``run_class_finetuning.py`` reads the state dict under ``model`` or ``module`` (``--model_key model|module``).

omnimask's side (``vit`` encoder and ``mae_decoder`` head of the ``videomae*`` recipes): ``encoder.embed`` is a
Linear over a token's values in the tokenizer's order (frame, row, column, channel), which is the Conv3d's
kernel ``[E, C, t, p, p]`` with its input channel moved last; ``mlp.0``/``mlp.2`` are ``fc1``/``fc2``;
``head.embed``/``head.pred`` are ``encoder_to_decoder``/``decoder.head``. Attention biases: omnimask's
``qkv_bias: qv`` keeps ``attn.q_bias``/``attn.v_bias`` as VideoMAE does (same names); ``none`` has no bias
(the reference with ``qkv_bias=False``); ``qkv`` (one fused bias) maps its q and v parts, and its k part,
which cannot change attention (softmax is invariant to adding ``q . b_k`` to every score of a row), is
dropped on export and zero on import.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from omnimask.weights.base import ReferenceLayout, State

CHANNELS = 3
"""VideoMAE's ``encoder_in_chans``: RGB."""

# omnimask block key suffix -> the reference's (keys not listed here are named alike)
_BLOCK_RENAMES = {"mlp.0.": "mlp.fc1.", "mlp.2.": "mlp.fc2.", "attn.qkv.bias": None}
_TOP_RENAMES = {
    "encoder.embed.": "encoder.patch_embed.proj.",
    "head.embed.weight": "encoder_to_decoder.weight",
    "head.mask_token": "mask_token",
    "head.norm.": "decoder.norm.",
    "head.pred.": "decoder.head.",
    "encoder.norm.": "encoder.norm.",
}
_BLOCK = re.compile(r"^(encoder|head)\.blocks\.(\d+)\.(.+)$")
_REF_BLOCK = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.(.+)$")


def _tubelet(recipe: Any) -> tuple[int, int]:
    """``(t, p)``: frames per tubelet and the patch side of ``recipe``'s ``video_tubelets`` tokenizer."""
    tok = recipe.tokenizer
    return tok.tubelet_size, tok.patch_size


def _qkv_bias(recipe: Any, side: str) -> str:
    """The attention-bias layout (``"qkv"``, ``"qv"`` or ``"none"``) of omnimask's ``side`` (encoder or head)."""
    from omnimask.core import registry

    m = recipe.config.model
    _, cfg = registry.check(side, m.encoder if side == "encoder" else m.head)
    return cfg.qkv_bias


def patch_embed_to_conv(weight: torch.Tensor, t: int, p: int) -> torch.Tensor:
    """``[E, t * p * p * C]`` (values ordered frame, row, column, channel) -> Conv3d kernel ``[E, C, t, p, p]``."""
    return weight.reshape(weight.shape[0], t, p, p, CHANNELS).permute(0, 4, 1, 2, 3).contiguous()


def conv_to_patch_embed(weight: torch.Tensor) -> torch.Tensor:
    """Conv3d kernel ``[E, C, t, p, p]`` -> ``[E, t * p * p * C]``, the inverse of :func:`patch_embed_to_conv`."""
    return weight.permute(0, 2, 3, 4, 1).reshape(weight.shape[0], -1).contiguous()


def to_reference(state: State, recipe: Any) -> State:
    """omnimask's ``MaskedModel.state_dict()`` -> ``PretrainVisionTransformer.state_dict()`` (module docstring)."""
    t, p = _tubelet(recipe)
    out: State = {}
    for key, value in state.items():
        block = _BLOCK.match(key)
        if block:
            side, n, rest = block.groups()
            prefix = f"{'encoder' if side == 'encoder' else 'decoder'}.blocks.{n}."
            if rest == "attn.qkv.bias":  # omnimask's fused "qkv" layout: VideoMAE holds q and v apart
                dim = value.shape[0] // 3
                out[prefix + "attn.q_bias"], out[prefix + "attn.v_bias"] = value[:dim], value[2 * dim :]
                continue
            for ours, theirs in _BLOCK_RENAMES.items():
                if theirs and rest.startswith(ours):
                    rest = theirs + rest[len(ours) :]
            out[prefix + rest] = value
            continue
        if key == "encoder.embed.weight":
            out["encoder.patch_embed.proj.weight"] = patch_embed_to_conv(value, t, p)
            continue
        for ours, theirs in _TOP_RENAMES.items():
            if key == ours or (ours.endswith(".") and key.startswith(ours)):
                out[theirs + key[len(ours) :]] = value
                break
        else:
            raise KeyError(
                f"{key} has no place in VideoMAE's checkpoint (a cls token or a bias of encoder_to_decoder: "
                f"the videomae recipes have neither)"
            )
    return out


def from_reference(state: State, recipe: Any) -> State:
    """The inverse of :func:`to_reference` for the keys ``state`` holds (parameters alone, e.g. gradients, will
    do); keys omnimask has no place for are left out."""
    inverse_top = {theirs: ours for ours, theirs in _TOP_RENAMES.items()}
    out: State = {}
    for key, value in state.items():
        block = _REF_BLOCK.match(key)
        if block:
            side, n, rest = block.groups()
            ours_side = "encoder" if side == "encoder" else "head"
            prefix = f"{ours_side}.blocks.{n}."
            if rest in ("attn.q_bias", "attn.v_bias") and _qkv_bias(recipe, ours_side) == "qkv":
                if rest == "attn.q_bias":  # once per block, from both halves
                    v = state.get(f"{side}.blocks.{n}.attn.v_bias")
                    if v is not None:
                        out[prefix + "attn.qkv.bias"] = torch.cat([value, torch.zeros_like(value), v])
                continue
            for ours, theirs in _BLOCK_RENAMES.items():
                if theirs and rest.startswith(theirs):
                    rest = ours + rest[len(theirs) :]
            out[prefix + rest] = value
            continue
        if key == "encoder.patch_embed.proj.weight":
            out["encoder.embed.weight"] = conv_to_patch_embed(value)
            continue
        for theirs, ours in inverse_top.items():
            if key == theirs or (theirs.endswith(".") and key.startswith(theirs)):
                out[ours + key[len(theirs) :]] = value
                break
    return out


def wrap(state: State, recipe: Any) -> dict[str, State]:
    """What ``run_mae_pretraining.py`` saves, less what is not weights (optimizer, epoch, scaler, its argparse
    ``args``, which ``weights_only`` loading refuses): ``{"model": state_dict}``."""
    return {"model": state}


def unwrap(obj: Any) -> State:
    """The reference state dict in a saved object: under ``model`` or ``module`` (the keys
    ``run_class_finetuning.py`` tries), or the object itself."""
    for key in ("model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    return obj


LAYOUT = ReferenceLayout(
    name="videomae",
    repo="MCG-NJU/VideoMAE",
    to_reference=to_reference,
    from_reference=from_reference,
    wrap=wrap,
    unwrap=unwrap,
)
