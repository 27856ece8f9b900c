"""Samples -> batches, for grid and for variable-length tokens.

Grid tokens (images, video, audio, point groups) stack: every sample has the same
number of tokens and of hidden tokens, so the model gathers them without padding::

    tokens [B, N, D]   mask [B, N]   target [B, N_p, ...]   num_hidden (an int)

(without ``target`` when the model gathers it from the tokens on the device: a target that
``gathers_tokens``, see :class:`omnimask.data.loader.SamplePipeline`).

Variable-length tokens (protein sequences, graphs) are padded to the batch's
longest sample, and the targets of all samples are concatenated::

    tokens [B, N_max, D] (pad_value)   valid [B, N_max]   mask [B, N_max] (False at padding)
    target [M, ...]   (M = mask.sum(): the hidden tokens in row-major order)
    num_valid         valid.sum() as an int, counted here so that nothing reads it back from the device
    edges [2, E]      graph edges as indices into tokens[valid] (PyG's Batch layout:
                      each graph's node indices offset by the nodes before it)
    loop_free         whether no edge is a self-loop (GAT layers add their own)
    edge_hidden [E]   with an edge masker: the edges it hides from the encoder
    encoder_edges [2, E_v]  the others (selections whose size depends on the data are made here,
                      on the host: on the device they read the size back and break a compiled graph)

Both layouts may also hold ``coords``, ``queries`` (decoder masker) and
``mask_token`` (maskers that show the encoder every token).

A masker that counts over the whole batch (``Masker.batch_level``: GraphMAE's) masks here, once the
batch is known (:class:`BatchMasking`): its samples come without ``mask``, ``target`` and corruption,
with the seed each would have masked with (``mask_seed``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from omnimask.core.contracts import check_corrupt, check_mask, check_target
from omnimask.core.interfaces import Masker, Target, Tokenizer, TokenLayout
from omnimask.core.seeding import derive_seed

PER_TOKEN = ("mask", "queries", "coords", "mask_token")
"""Per-token sample fields, batched like the tokens."""
OPTIONAL = ("target", *PER_TOKEN)
"""The sample fields a batch holds when its samples do (all but the tokens)."""
BOOKKEEPING = ("keys", "replaced")
"""Batch entries for logs and counters that the model does not read."""


@dataclass(frozen=True)
class BatchMasking:
    """A batch-level masker (``Masker.batch_level``) and the recipe's target, applied to a padded batch."""

    masker: Masker
    target: Target

    def __call__(self, batch: dict[str, Any], seeds: list[int]) -> None:
        """Add ``mask`` and ``mask_token`` ``[B, N]`` and the concatenated ``target`` to ``batch``, and corrupt
        its tokens; the draws come from one seed made of the samples' ``seeds`` (in batch order)."""
        valid = batch["valid"]
        flat = batch["tokens"][valid]  # [T, D]: the batch's tokens as one sample, row-major
        mask, corrupted, flags = self.masker.mask_batch(flat, derive_seed("batch_mask", *seeds))
        check_mask(self.masker, mask, TokenLayout((flat.shape[0],), flat.shape[1]), "batch-level masker")
        corrupted, flags = check_corrupt(self.masker, flat, (corrupted, flags))
        batch["target"] = check_target(self.target, self.target(flat, mask), mask)
        tokens = batch["tokens"].clone()
        tokens[valid] = corrupted
        batch["tokens"] = tokens
        for name, values in (("mask", mask), ("mask_token", flags)):
            batch[name] = torch.zeros(valid.shape, dtype=torch.bool)
            batch[name][valid] = values


def recipe_collate(recipe: Any) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """:func:`collate_for` a recipe's samples (``recipe.tokenizer``, ``.masker``, ``.target``), with its
    :class:`BatchMasking` when its masker masks whole batches."""
    masking = BatchMasking(recipe.masker, recipe.target) if recipe.masker.batch_level else None
    return collate_for(recipe.tokenizer, masking)


def collate(
    samples: list[dict[str, Any]], pad_value: Optional[float] = None, batch_masking: Optional[BatchMasking] = None
) -> dict[str, Any]:
    """Batch pipeline outputs (see the module docstring); ``pad_value`` None: grid tokens; ``batch_masking``:
    masks the (padded) batch after it is made."""
    batch: dict[str, Any] = {
        "keys": [s["key"] for s in samples],
        "replaced": sum(bool(s.get("replaced")) for s in samples),
    }
    fields = [name for name in OPTIONAL if name in samples[0]]
    if pad_value is None:
        for name in ("tokens", *fields):
            # not default_collate: in a loader worker it stacks into a fresh shared-memory segment, where
            # the worker's pool of reused segments (shared_batch.py) saves making one a batch
            batch[name] = torch.stack([torch.as_tensor(s[name]) for s in samples])
    else:
        lengths = torch.tensor([s["tokens"].shape[0] for s in samples])
        batch["tokens"] = pad_stack([s["tokens"] for s in samples], pad_value)
        batch["valid"] = torch.arange(batch["tokens"].shape[1])[None] < lengths[:, None]
        batch["num_valid"] = int(lengths.sum())
        for name in fields:
            batch[name] = torch.cat([s[name] for s in samples]) if name == "target" else pad_stack([s[name] for s in samples], 0)
        if "edges" in samples[0]:
            offsets = torch.cumsum(lengths, 0) - lengths
            edges = batch["edges"] = torch.cat([s["edges"] + off for s, off in zip(samples, offsets.tolist())], dim=1)
            batch["loop_free"] = bool((edges[0] != edges[1]).all())
            if "edge_hidden" in samples[0]:
                hidden = batch["edge_hidden"] = torch.cat([s["edge_hidden"] for s in samples])
                batch["encoder_edges"] = edges[:, ~hidden]
        if batch_masking is not None:
            batch_masking(batch, [int(s["mask_seed"]) for s in samples])  # a 0-d tensor after Ray Data
    add_mask_counts(batch)
    return batch


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` without its :data:`BOOKKEEPING` entries: what ``MaskedModel.loss`` reads. A compiled loss fed
    this is not guarded on (and recompiled for) each batch's sample keys and counts."""
    return {k: v for k, v in batch.items() if k not in BOOKKEEPING}


def collate_for(tokenizer: Tokenizer, batch_masking: Optional[BatchMasking] = None) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """The collate function for a tokenizer's samples (picklable, for DataLoader workers); ``batch_masking``
    for a recipe whose masker masks whole batches (:func:`recipe_collate`)."""
    if batch_masking is not None and not tokenizer.variable_length:
        raise ValueError("batch-level masking needs variable-length (padded) batches")
    return functools.partial(collate, pad_value=tokenizer.pad_value if tokenizer.variable_length else None, batch_masking=batch_masking)


def pad_stack(tensors: list[torch.Tensor | np.ndarray], value: float) -> torch.Tensor:
    """``[N_i, ...]`` tensors (or arrays) -> ``[B, max N_i, ...]``, filled with ``value`` after each one's rows."""
    tensors = [torch.as_tensor(t) for t in tensors]
    first = tensors[0]
    # empty + fill_: torch.full with a float value for an integer dtype takes a slow, element-by-element path
    out = torch.empty((len(tensors), max(t.shape[0] for t in tensors), *first.shape[1:]), dtype=first.dtype).fill_(value)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def add_mask_counts(batch: dict[str, Any]) -> None:
    """Set ``num_hidden`` (and ``num_queries``, ``num_predict``) from the batch's masks. Grid batches
    need the same counts in every sample (the model gathers them without padding); in padded
    batches the counts may differ, and ``num_hidden`` is None."""
    if "valid" in batch:
        batch["num_hidden"] = None
        return
    batch["num_hidden"] = equal_count(batch["mask"], "mask")
    if "queries" in batch:
        batch["num_queries"] = equal_count(batch["queries"], "decoder query mask")
        batch["num_predict"] = equal_count(batch["mask"] & batch["queries"], "predicted-token mask (hidden and decoder-visible)")


def equal_count(mask: torch.Tensor, name: str) -> int:
    """The number of True per row of ``mask [B, N]``, which must be the same for every row."""
    counts = mask.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"every {name} in a batch must select the same number of tokens, got {counts.tolist()}")
    return int(counts[0])


def split_grid_batch(batch: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """A grid batch as ``parts`` batches of consecutive samples, sizes differing by at most one (the first
    ones larger): every tensor and list of the batch's ``B`` samples is sliced, the counts (``num_hidden``,
    ...) are the same in every part. Slices are views; nothing is copied. Padded batches (``valid``) hold
    concatenated targets and offset edges and do not split this way: ValueError."""
    if "valid" in batch:
        raise ValueError("a padded batch (variable-length tokens) cannot be split into parts by its samples")
    b = batch["tokens"].shape[0]
    if not 1 <= parts <= b:
        raise ValueError(f"cannot split a batch of {b} samples into {parts} parts")

    def per_sample(v: Any) -> bool:
        return (isinstance(v, list) or isinstance(v, torch.Tensor) and v.ndim > 0) and len(v) == b

    out, start = [], 0
    for size in (b // parts + (i < b % parts) for i in range(parts)):
        out.append({k: v[start : start + size] if per_sample(v) else v for k, v in batch.items()})
        start += size
    return out
