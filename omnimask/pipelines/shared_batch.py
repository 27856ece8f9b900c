"""A batch's tensors in one shared-memory buffer, for the trip from a loader worker to the main process.

A DataLoader worker hands each tensor of a batch to the main process through a shared-memory
segment of its own: the worker creates it and sends its file descriptor, the main process maps
it. That costs ~0.4 ms a tensor on the 2-core machine of ``docs/performance.md``: 3.3 ms for a
GraphMAE batch of seven small tensors, a twentieth of a millisecond per graph, and all of it on
the main process's side too, the one that drives the training step. :func:`in_one_buffer` copies
the tensors that are not in shared memory yet into one segment instead (the copy the transfer would
otherwise make into each) and sends views of it.
"""

from __future__ import annotations

from typing import Any

import torch

ALIGN = 64
"""Byte alignment of each tensor in the buffer (any dtype's, and a cache line)."""


def in_one_buffer(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with its contiguous CPU tensors replaced by equal views of one new shared-memory buffer
    (same dtype, shape and values); other entries as they are. Tensors already in shared memory stay
    as they are: ``default_collate`` stacks grid batches straight into a segment of their own, and copying
    a 10 MB image batch again cost more than the segment it saves. With fewer than two tensors to
    gather the batch is returned unchanged."""
    tensors = {k: v for k, v in batch.items()
               if torch.is_tensor(v) and v.device.type == "cpu" and v.is_contiguous() and not v.is_shared()}
    if len(tensors) < 2:
        return batch
    offsets, total = {}, 0
    for key, t in tensors.items():
        offsets[key] = total
        total += -(-t.numel() * t.element_size() // ALIGN) * ALIGN
    buffer = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(max(total, 1)))
    out = dict(batch)
    for key, t in tensors.items():
        start = offsets[key]
        view = buffer[start : start + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
        out[key] = view.copy_(t)
    return out
