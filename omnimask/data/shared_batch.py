"""A batch's tensors in one shared-memory buffer, for the trip from a loader worker to the main process.

A DataLoader worker hands each tensor of a batch to the main process through a shared-memory
segment of its own: the worker creates it (torch allocates and zeroes every page of it up front),
fills it, sends its file descriptor, and the main process maps it; both unmap it when the batch is
dropped. On a machine with few cores that is a noticeable share of the loader's work for every tensor,
more for a large batch (every page is zeroed and mapped again), and some of it is on the main process's
side too, the one that drives the training step.

So the worker puts the whole batch into one segment (:func:`pack`), and reuses segments:

- :class:`ReleaseBoard`: a small table in shared memory, created by the main process before the
  workers start, with one row per worker and one cell per reusable segment ("slot"). A cell holds 0
  when its segment is free, else the serial number of the batch it carries;
- :class:`BufferPool` (worker side): packs each batch into the segment of a free slot that is big
  enough (allocating one for the slot the first time, or a bigger one when the batches grow), marks
  the cell with a fresh serial and tags the batch with ``(worker, slot, serial)``;
- :class:`Recycler` (main side): takes the tag off each batch it passes on and watches the batch's
  storage with a weak reference; once nothing in the main process holds it any more (every tensor
  and view of the batch gone), it clears the cell, and the worker may fill that segment again. Each
  new iteration of the loader also clears the cells of the batches the DataLoader discarded when it
  reset its workers (it drops what they had prefetched without passing it on).

A cell is only cleared by the serial it holds, so a late release can never free a segment that
carries a newer batch. When every slot is busy (a consumer that keeps many batches) the worker
falls back to a fresh segment, as a plain DataLoader does: nothing waits, nothing is overwritten.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef

log = logging.getLogger(__name__)

ALIGN = 64
"""Byte alignment of each tensor in the buffer (any dtype's, and a cache line)."""
TAG = "shared_buffer"
"""The batch entry that carries ``(worker, slot, serial)`` from a :class:`BufferPool` to its :class:`Recycler`."""


def packable(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The entries of ``batch`` that :func:`pack` moves: contiguous CPU tensors."""
    return {k: v for k, v in batch.items() if torch.is_tensor(v) and v.device.type == "cpu" and v.is_contiguous()}


def packed_size(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes :func:`pack` needs for ``tensors``, each starting at a multiple of :data:`ALIGN`."""
    return sum(-(-t.numel() * t.element_size() // ALIGN) * ALIGN for t in tensors.values())


def pack(batch: dict[str, Any], tensors: dict[str, torch.Tensor], buffer: torch.Tensor) -> dict[str, Any]:
    """``batch`` with ``tensors`` (some of its entries) replaced by equal views of the uint8 ``buffer``
    (same dtype, shape and values; at least :func:`packed_size` bytes); other entries as they are."""
    out, start = dict(batch), 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        out[key] = buffer[start : start + nbytes].view(t.dtype).view(t.shape).copy_(t)
        start += -(-nbytes // ALIGN) * ALIGN
    return out


def shared_buffer(nbytes: int) -> torch.Tensor:
    """A new uint8 tensor of ``nbytes`` (at least 1) in a shared-memory segment of its own."""
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(max(nbytes, 1)))


def in_one_buffer(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with its contiguous CPU tensors moved into one new shared-memory segment (:func:`pack`);
    with fewer than two tensors the batch is returned unchanged (one tensor crosses as one segment anyway)."""
    tensors = packable(batch)
    if len(tensors) < 2:
        return batch
    return pack(batch, tensors, shared_buffer(packed_size(tensors)))


class ReleaseBoard:
    """``[workers, slots]`` int64 cells in shared memory, 0 for a free segment, else the serial of the batch
    in it; and the loader's iteration count (``generation``), which the serials carry in their high bits.
    Made by the main process before its loader workers start (they inherit it)."""

    SHIFT = 40
    """Serials are ``generation << SHIFT | n``, ``n`` counting the batches a worker process packed."""

    def __init__(self, workers: int, slots: int):
        if workers < 1 or slots < 1:
            raise ValueError(f"a release board needs at least one worker and one slot, got {workers} and {slots}")
        self.cells = torch.zeros(workers, slots, dtype=torch.int64).share_memory_()
        self.generation = torch.zeros(1, dtype=torch.int64).share_memory_()


_packed = itertools.count(1)


class BufferPool:
    """Worker side of the :class:`ReleaseBoard`: reusable shared-memory segments, one per slot."""

    def __init__(self, board: ReleaseBoard, worker: int):
        self.board, self.worker = board, worker
        self.cells = board.cells[worker].numpy()
        self.buffers: list[Optional[torch.Tensor]] = [None] * len(self.cells)
        self.fell_back = False

    def pack(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` packed into a free slot's segment and tagged (:data:`TAG`), or into a fresh segment,
        untagged, when every slot is busy."""
        tensors = packable(batch)
        if not tensors:
            return batch
        need = packed_size(tensors)
        slot = self.free_slot(need)
        if slot is None:
            if not self.fell_back:
                log.info(
                    "loader worker %d: all %d reusable batch segments are in use (is the consumer keeping "
                    "batches?); packing into fresh ones meanwhile",
                    self.worker,
                    len(self.cells),
                )
                self.fell_back = True
            return pack(batch, tensors, shared_buffer(need))
        buffer = self.buffers[slot]
        if buffer is None or buffer.numel() < need:
            buffer = self.buffers[slot] = shared_buffer(need + need // 4)  # room for batches that grow a little
        # unique in the row: a worker process restarts only with a new iteration, which bumps the generation
        serial = int(self.board.generation[0]) << ReleaseBoard.SHIFT | next(_packed)
        self.cells[slot] = serial
        out = pack(batch, tensors, buffer)
        out[TAG] = (self.worker, slot, serial)
        return out

    def free_slot(self, need: int) -> Optional[int]:
        """A free slot whose segment holds ``need`` bytes, else a free slot (its segment to be made or
        grown), else None."""
        free = [i for i, cell in enumerate(self.cells) if cell == 0]
        fits = [i for i in free if (buffer := self.buffers[i]) is not None and buffer.numel() >= need]
        return (fits or free or [None])[0]


class Recycler:
    """Main side of the :class:`ReleaseBoard`, one per loader: passes batches on without their tag, and
    frees each batch's slot once nothing in this process holds the batch's storage any more."""

    def __init__(self, board: ReleaseBoard):
        self.board = board
        self.cells = board.cells.numpy()
        self.held: dict[tuple[int, int, int], StorageWeakRef] = {}

    def iterate(self, start: Callable[[], Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        """``start()``'s batches (a DataLoader iterator), untagged. A new iteration first frees the slots of
        the previous one's batches that the DataLoader dropped without passing them on: ``start`` resets
        the workers and discards what they had prefetched."""
        self.board.generation += 1  # before start() tells the workers to begin again
        batches = start()
        self.reclaim()
        return self.track(batches)

    def track(self, batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for batch in batches:
            self.release()
            tag = batch.pop(TAG, None)
            if tag is not None:  # a list: the DataLoader's default_convert turns tuples into lists
                tensor = next(v for v in batch.values() if torch.is_tensor(v))
                self.held[tuple(tag)] = StorageWeakRef(tensor.untyped_storage())
            yield batch

    def release(self) -> None:
        """Clear the cells of the batches that nothing holds any more."""
        for tag in [tag for tag, ref in self.held.items() if ref.expired()]:
            worker, slot, serial = tag
            del self.held[tag]
            if self.cells[worker, slot] == serial:
                self.cells[worker, slot] = 0

    def reclaim(self) -> None:
        """Clear the cells of earlier iterations' batches that were never passed on (workers only pack
        batches of this generation once told to begin again, and only fill cells that hold 0)."""
        generation = int(self.board.generation[0])
        held = {(worker, slot) for worker, slot, _ in self.held}
        for (worker, slot), cell in np.ndenumerate(self.cells):
            if cell and cell >> ReleaseBoard.SHIFT < generation and (worker, slot) not in held:
                self.cells[worker, slot] = 0
