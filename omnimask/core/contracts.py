"""The contracts of the pluggable pieces, checked where their outputs enter omnimask.

A tokenizer, masker or target that returns the wrong shape, dtype or count fails
at the first sample with a :class:`ContractError` that names the component and
what was expected, instead of a shape error deep in the model; the loader never
replaces such a sample (it would fail for every sample). Heads and encoders are
checked at the first batch (:class:`omnimask.core.recipe.MaskedModel`).
The checks are a few comparisons per sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from omnimask.core.interfaces import Masker, Target, Tokenizer, TokenLayout, Tokens


class ContractError(RuntimeError):
    """A component broke its contract; the message names it and says what was expected."""


def component_name(obj: Any) -> str:
    """``kind 'name' (module.Class)`` for messages."""
    cls = type(obj)
    return f"{cls.__dict__.get('registry_name', cls.__name__)!r} ({cls.__module__}.{cls.__qualname__})"  # own name, not a base's


def check_tokens(tokenizer: Tokenizer, out: Any) -> Tokens:
    """A tokenizer's output as :class:`Tokens`: values ``[N, layout.token_dim]`` with ``N == layout.num_tokens``
    (``<=`` for variable-length tokenizers), coords ``[N, C]``, edges int64 ``[2, E]`` indexing the tokens."""
    who = f"tokenizer {component_name(tokenizer)}"
    t = out if isinstance(out, Tokens) else Tokens(out) if isinstance(out, (np.ndarray, torch.Tensor)) else None
    if t is None:
        raise ContractError(f"{who} returned {type(out).__name__}; expected an array or tensor [N, D] or omnimask.core.interfaces.Tokens")
    layout = tokenizer.layout
    v = t.values
    if v.ndim != 2 or v.shape[1] != layout.token_dim:
        raise ContractError(f"{who} returned tokens of shape {list(v.shape)}; expected [N, {layout.token_dim}] (its layout's token_dim)")
    if tokenizer.variable_length:
        if not 1 <= v.shape[0] <= layout.num_tokens:
            raise ContractError(f"{who} returned {v.shape[0]} tokens; a variable-length tokenizer gives 1..{layout.num_tokens}")
    elif v.shape[0] != layout.num_tokens:
        raise ContractError(
            f"{who} returned {v.shape[0]} tokens; its layout {layout.grid} has {layout.num_tokens} "
            "(set variable_length = True for samples of different lengths)"
        )
    if t.coords is not None and (t.coords.ndim != 2 or t.coords.shape[0] != v.shape[0]):
        raise ContractError(f"{who} returned coords of shape {list(t.coords.shape)}; expected [{v.shape[0]}, C]")
    if t.edges is not None:
        e = t.edges
        if e.ndim != 2 or e.shape[0] != 2 or e.dtype != torch.int64:
            raise ContractError(f"{who} returned edges {e.dtype} {list(e.shape)}; expected int64 [2, E]")
        if e.numel() and (int(e.min()) < 0 or int(e.max()) >= v.shape[0]):
            raise ContractError(f"{who} returned edges outside its {v.shape[0]} tokens")
    return t


def count_true(mask: np.ndarray | torch.Tensor) -> int:
    """``int(mask.sum())`` of a bool mask; for a CPU tensor through numpy, which costs a few microseconds where
    a torch reduction costs tens in a loader worker whose caches the image decoder has just flushed."""
    if isinstance(mask, np.ndarray):
        return int(np.count_nonzero(mask))
    return int(np.count_nonzero(mask.numpy())) if mask.device.type == "cpu" else int(mask.sum())


def check_mask(masker: Masker, mask: Any, layout: TokenLayout, role: str = "masker") -> np.ndarray | torch.Tensor:
    """A mask: bool ``[N]`` (numpy array or tensor) with exactly ``num_masked(layout)`` True."""
    who = f"{role} {component_name(masker)}"
    if not (
        isinstance(mask, np.ndarray) and mask.dtype == np.bool_ or isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
    ) or mask.shape != (layout.num_tokens,):
        got = f"{mask.dtype} {list(mask.shape)}" if isinstance(mask, (np.ndarray, torch.Tensor)) else type(mask).__name__
        raise ContractError(f"{who} returned {got}; expected a bool array or tensor [{layout.num_tokens}]")
    hidden, expected = count_true(mask), masker.num_masked(layout)
    if hidden != expected:
        raise ContractError(
            f"{who} hid {hidden} of {layout.num_tokens} tokens; its num_masked says {expected} "
            "(every sample must hide exactly num_masked(layout) tokens)"
        )
    return mask


def check_corrupt(masker: Masker, tokens: torch.Tensor, out: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``Masker.corrupt``'s output: tokens of the input's shape and dtype, and a bool ``[N]`` mask-token flag."""
    who = f"masker {component_name(masker)}"
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ContractError(f"{who}.corrupt returned {type(out).__name__}; expected (tokens [N, D], mask_token [N])")
    values, flags = out
    if values.shape != tokens.shape or values.dtype != tokens.dtype:
        raise ContractError(
            f"{who}.corrupt returned tokens {values.dtype} {list(values.shape)}; expected {tokens.dtype} {list(tokens.shape)} (the input's)"
        )
    if flags.dtype != torch.bool or flags.shape != tokens.shape[:1]:
        raise ContractError(f"{who}.corrupt returned mask_token {flags.dtype} {list(flags.shape)}; expected bool [{tokens.shape[0]}]")
    return values, flags


def check_target(target: Target, value: Any, predicted: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A compact target: one row per predicted token."""
    who = f"target {component_name(target)}"
    rows = count_true(predicted)
    if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[0] != rows:
        got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ContractError(f"{who} returned {got}; expected [{rows}, ...]: one row per predicted token, in token order")
    return value


def check_prediction(head: Any, target: Any, pred: torch.Tensor, final_target: torch.Tensor) -> None:
    """The head's predictions against the finalized targets: the same rows, and the target's ``dim`` values each
    (class logits for integer targets)."""
    if not isinstance(pred, torch.Tensor):
        raise ContractError(f"head {component_name(head)} returned {type(pred).__name__}; expected a tensor")
    classes = not final_target.is_floating_point()
    if not classes and final_target.shape[-1] != target.dim:
        raise ContractError(
            f"target {component_name(target)}'s finalize gave {final_target.shape[-1]} values per token; "
            f"its dim says {target.dim} (the head is built to predict dim values)"
        )
    expected = [*final_target.shape, target.dim] if classes else list(final_target.shape)
    if list(pred.shape) != expected:
        raise ContractError(
            f"head {component_name(head)} predicted {list(pred.shape)} for target {component_name(target)} "
            f"{list(final_target.shape)}; expected {expected}" + (" (logits over target.dim classes)" if classes else "")
        )
