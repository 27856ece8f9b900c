"""MAE's and AudioMAE's checkpoint layout (``MaskedAutoencoderViT`` in facebookresearch/mae ``models_mae.py``
and facebookresearch/AudioMAE ``models_mae.py``; the two share their parameter names).

The reference model's ``state_dict()`` holds (E: encoder width, D: decoder width, C: input channels,
3 for images and 1 for a filterbank, p: patch side, N: tokens)::

    cls_token [1, 1, E]
    pos_embed [1, 1 + N, E]                      fixed sin-cos table, a Parameter with requires_grad=False
    patch_embed.proj.{weight [E, C, p, p], bias [E]}   Conv2d (timm 0.3.2 PatchEmbed / AudioMAE PatchEmbed_org)
    blocks.N.norm1.{weight, bias}                timm 0.3.2 Block
    blocks.N.attn.qkv.{weight [3E, E], bias [3E]}
    blocks.N.attn.proj.{weight, bias}
    blocks.N.norm2.{weight, bias}
    blocks.N.mlp.{fc1, fc2}.{weight, bias}
    norm.{weight, bias}
    decoder_embed.{weight [D, E], bias [D]}
    mask_token [1, 1, D]
    decoder_pos_embed [1, 1 + N, D]              fixed, as pos_embed
    decoder_blocks.N.*                           as blocks.N.*
    decoder_norm.{weight, bias}
    decoder_pred.{weight [p*p*C, D], bias}

omnimask's side (``vit`` encoder, ``mae_decoder`` head): ``encoder.embed`` is a Linear over a token's values in
the tokenizer's order, which is MAE's ``patchify`` order (row, column, channel; AudioMAE: time, frequency), so
the Conv2d kernel is that Linear's weight reshaped ``[E, p, p, C]`` with the channel moved to the front;
``mlp.0``/``mlp.2`` are ``fc1``/``fc2``; ``head.embed``/``head.norm``/``head.pred`` are ``decoder_embed``/
``decoder_norm``/``decoder_pred``. omnimask's position tables are non-persistent buffers, so
:func:`to_reference` computes the two tables the reference's ``initialize_weights`` persists (MAE:
``get_2d_sincos_pos_embed`` over the square token grid; AudioMAE: ``get_2d_sincos_pos_embed_flexible`` over
``PatchEmbed_org.patch_hw = (frequency, time)`` tokens, the swapped grid, whose rows its Conv2d's
(time, frequency) raster order then reads) and :func:`from_reference` drops them.

The training script saves ``{"model": state_dict, "optimizer": ..., "epoch": ..., "scaler": ..., "args": ...}``
(``util/misc.py`` ``save_model``); the released checkpoints hold ``{"model": state_dict}`` (the image
pretraining release: the encoder's keys only, which :func:`from_reference` maps alone). AudioMAE's released
pretraining checkpoint comes from ``--decoder_mode 1`` (``submit_pretrain_audioset2M.sh``): 16 post-norm
Swin blocks with cosine window attention (``timm_patch/swin_transformer.py`` ``SwinTransformerBlock``), whose
``norm1``/``attn.qkv``/``attn.proj``/``norm2``/``mlp`` keys have the names and shapes of a global-attention
block but not its function. :func:`from_reference` recognises that decoder by its ``attn.tau`` and
``attn.meta_mlp`` and leaves the whole decoder out (omnimask's ``mae_decoder`` is decoder_mode 0), so only
the encoder is loaded from such a file.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from omnimask.weights.base import ReferenceLayout, State, without_ddp_prefix

# omnimask's block key suffix -> the reference's (timm 0.3.2's Mlp names its Linears)
_BLOCK_INNER = {"mlp.0.": "mlp.fc1.", "mlp.2.": "mlp.fc2."}
# omnimask top-level key (or prefix ending in ".") -> the reference's
_TOP = {
    "encoder.cls_token": "cls_token",
    "encoder.embed.bias": "patch_embed.proj.bias",
    "encoder.norm.": "norm.",
    "head.embed.": "decoder_embed.",
    "head.mask_token": "mask_token",
    "head.norm.": "decoder_norm.",
    "head.pred.": "decoder_pred.",
}
_OURS_BLOCK = re.compile(r"^(encoder|head)\.blocks\.(\d+)\.(.+)$")
_THEIRS_BLOCK = re.compile(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)$")
_KNOWN_INNER = re.compile(r"^(norm1|norm2|attn\.qkv|attn\.proj|mlp\.0|mlp\.2)\.(weight|bias)$")
POSITION_KEYS = ("pos_embed", "decoder_pos_embed")
_SWIN_DECODER = re.compile(r"^decoder_blocks\.\d+\.attn\.(tau|meta_mlp\.)")
_DECODER_KEYS = ("decoder_embed.", "mask_token", "decoder_pos_embed", "decoder_blocks.", "decoder_norm.", "decoder_pred.")


def is_audio(recipe: Any) -> bool:
    """Whether ``recipe`` is an AudioMAE recipe (filterbank tokens) rather than an image MAE."""
    return recipe.config.model.tokenizer.name == "audio_fbank"


def patch_size(recipe: Any) -> int:
    """The patch side ``p`` of ``recipe``'s tokenizer."""
    tok = recipe.tokenizer
    return tok.cfg.patch_size if is_audio(recipe) else tok.patch_size


def in_chans(recipe: Any) -> int:
    """The reference's ``in_chans``: 1 for a filterbank, 3 for images."""
    return 1 if is_audio(recipe) else 3


def reference_grid(recipe: Any) -> tuple[int, int]:
    """The ``(rows, columns)`` grid the reference builds its sin-cos tables over.

    MAE: the square token grid (``int(num_patches ** .5)`` each way). AudioMAE: ``patch_hw``, which
    ``PatchEmbed_org`` sets to ``(img_size[1] // p, img_size[0] // p)`` = (frequency, time) for a
    ``(time, frequency)`` input, the token grid with its axes swapped."""
    grid = recipe.tokenizer.layout.grid
    if is_audio(recipe):
        return grid[1], grid[0]
    if grid[0] != grid[1]:
        raise ValueError(f"MAE's position table is square; the token grid is {grid}")
    return grid[0], grid[1]


def reference_pos_embed(recipe: Any, dim: int) -> torch.Tensor:
    """The fixed table ``[1, 1 + N, dim]`` the reference persists (cls row zero), row ``1 + k`` added to the
    token ``k`` of the Conv2d's raster order: the 2-D sin-cos table of :func:`reference_grid` flattened
    row-major, columns encoded in the first half of the channels and rows in the second."""
    from omnimask.components.layers import sincos_pos_embed

    return sincos_pos_embed(reference_grid(recipe), dim, cls_token=True)[None]


def linear_to_conv(weight: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """``[E, p * p * C]`` (values ordered row, column, channel) -> Conv2d kernel ``[E, C, p, p]``."""
    return weight.reshape(weight.shape[0], p, p, channels).permute(0, 3, 1, 2).contiguous()


def conv_to_linear(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d kernel ``[E, C, p, p]`` -> ``[E, p * p * C]``, the inverse of :func:`linear_to_conv`."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1).contiguous()


def _rename_inner(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def check_positions(recipe: Any) -> None:
    """The reference's model adds its own fixed tables (MAE: ``grid``; AudioMAE: ``grid_swapped``): weights
    trained with other positions would compute something else there."""
    expected = "grid_swapped" if is_audio(recipe) else "grid"
    for part in ("encoder", "head"):
        got = getattr(recipe.config.model, part).params.get("positions", "grid")
        if got != expected:
            raise ValueError(
                f"model.{part}.positions is {got!r}; {'AudioMAE' if is_audio(recipe) else 'MAE'} adds "
                f"the {expected!r} table, so these weights would compute something else there"
            )


def to_reference(state: State, recipe: Any) -> State:
    """omnimask's ``MaskedModel.state_dict()`` -> ``MaskedAutoencoderViT.state_dict()`` (module docstring),
    the two position tables computed as the reference's ``initialize_weights`` does."""
    check_positions(recipe)
    out: State = {}
    unplaced = []
    for key, value in state.items():
        block = _OURS_BLOCK.match(key)
        if block:
            side, n, rest = block.groups()
            if not _KNOWN_INNER.match(rest):  # e.g. VideoMAE-style q_bias/v_bias: timm's Block has no place
                unplaced.append(key)
                continue
            stack = "blocks" if side == "encoder" else "decoder_blocks"
            out[f"{stack}.{n}.{_rename_inner(rest, _BLOCK_INNER)}"] = value
        elif key == "encoder.embed.weight":
            out["patch_embed.proj.weight"] = linear_to_conv(value, patch_size(recipe), in_chans(recipe))
        else:
            theirs = _top_name(key, _TOP)
            if theirs is None:
                unplaced.append(key)
            else:
                out[theirs] = value
    if unplaced:
        raise KeyError(f"no place in MAE's MaskedAutoencoderViT for {unplaced}")
    encoder_dim = state["encoder.embed.weight"].shape[0]
    decoder_dim = state["head.embed.weight"].shape[0]
    device = state["encoder.embed.weight"].device
    out["pos_embed"] = reference_pos_embed(recipe, encoder_dim).to(device)
    out["decoder_pos_embed"] = reference_pos_embed(recipe, decoder_dim).to(device)
    return out


def from_reference(state: State, recipe: Any) -> State:
    """The inverse of :func:`to_reference` for the keys ``state`` holds (parameters alone, e.g. gradients,
    will do); the position tables and any key omnimask has no place for are left out, and so is an AudioMAE
    Swin decoder (``decoder_mode 1``: module docstring) as a whole."""
    inverse_top = {theirs: ours for ours, theirs in _TOP.items()}
    inverse_inner = {theirs: ours for ours, theirs in _BLOCK_INNER.items()}
    swin_decoder = any(_SWIN_DECODER.match(k) for k in state)
    out: State = {}
    for key, value in state.items():
        if swin_decoder and key.startswith(_DECODER_KEYS):
            continue
        block = _THEIRS_BLOCK.match(key)
        if block:
            side, n, rest = block.groups()
            rest = _rename_inner(rest, inverse_inner)
            if _KNOWN_INNER.match(rest):
                out[f"{'encoder' if side == 'blocks' else 'head'}.blocks.{n}.{rest}"] = value
        elif key == "patch_embed.proj.weight":
            out["encoder.embed.weight"] = conv_to_linear(value)
        elif key not in POSITION_KEYS:
            ours = _top_name(key, inverse_top)
            if ours is not None:
                out[ours] = value
    return out


def _top_name(key: str, table: dict[str, str]) -> str | None:
    """``key`` renamed by ``table`` (exact keys, or prefixes ending in ``.``), None where it has no entry."""
    for old, new in table.items():
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old) :]
    return None


def wrap(state: State, recipe: Any) -> dict[str, Any]:
    """The checkpoint object MAE's and AudioMAE's scripts write and read: ``{"model": state_dict}``."""
    return {"model": state}


def unwrap(obj: Any) -> State:
    """The state dict of a reference checkpoint: ``{"model": sd, ...}`` (``misc.save_model`` adds
    ``optimizer``, ``epoch``, ``scaler``, ``args``) or a bare state dict; a ``module.`` prefix on every key
    (a model saved through DistributedDataParallel) is removed."""
    state = obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    if not isinstance(state, dict):
        raise TypeError(f"expected a state dict or {{'model': state_dict}}, got {type(state).__name__}")
    return without_ddp_prefix(state)


LAYOUT = ReferenceLayout(
    name="mae",
    repo="facebookresearch/mae, facebookresearch/AudioMAE",
    to_reference=to_reference,
    from_reference=from_reference,
    wrap=wrap,
    unwrap=unwrap,
)
