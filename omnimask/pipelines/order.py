"""The global sample order: a function of (seed, epoch, manifest) only.

Epoch ``e`` visits every stored sample once, in this order: the shards are
permuted with a seed of ``(seed, e)``, cut into windows of ``window`` shards,
and the samples of each window are shuffled with a seed of ``(seed, e,
window)``. A shuffle over a window of shards keeps reads local to a few files
while mixing samples far more than a per-worker buffer does.

Training walks this order in *steps* of ``world_size x batch_size`` positions;
rank ``r`` takes the ``r``-th block of ``batch_size`` positions of each step, and
DataLoader worker ``w`` of ``K`` serves the steps ``w, w + K, ...`` of its rank.
The last step of an epoch is padded with the epoch's first positions, so every
rank gets the same number of batches whatever the shard sizes. A position
``(epoch, offset)`` at a step boundary is all a checkpoint needs: any number of
ranks and workers can continue from it, with no sample lost or repeated apart
from that padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnimask.seeding import rng


def shard_order(seed: int, epoch: int, num_shards: int) -> list[int]:
    """The seeded shard permutation of ``epoch`` (shared by the torch and Ray Data loaders)."""
    return [int(i) for i in rng(seed, epoch, "shard_order").permutation(num_shards)]


def epoch_order(counts: list[int], seed: int, epoch: int, window: int) -> np.ndarray:
    """``[M, 2]`` int64 rows ``(shard index, sample index in shard)`` in the order of ``epoch``."""
    order = shard_order(seed, epoch, len(counts))
    parts = []
    for w, start in enumerate(range(0, len(order), max(1, window))):
        rows = np.concatenate(
            [np.stack([np.full(counts[s], s), np.arange(counts[s])], axis=1) for s in order[start : start + window]]
        ) if any(counts[s] for s in order[start : start + window]) else np.zeros((0, 2), np.int64)
        parts.append(rows[rng(seed, epoch, w, "window_shuffle").permutation(len(rows))])
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), np.int64)


@dataclass(frozen=True)
class Position:
    """Where the next training step starts: ``offset`` into the order of ``epoch``."""

    epoch: int = 0
    offset: int = 0


def advance(pos: Position, steps: int, step_size: int, epoch_len: int) -> Position:
    """The position ``steps`` steps of ``step_size`` samples after ``pos``.

    A step that reaches the end of an epoch is padded and the next epoch starts at 0.
    """
    left = -(-(epoch_len - pos.offset) // step_size)  # steps to the end of this epoch
    if steps < left:
        return Position(pos.epoch, pos.offset + steps * step_size)
    steps -= left
    per_epoch = -(-epoch_len // step_size)
    return Position(pos.epoch + 1 + steps // per_epoch, (steps % per_epoch) * step_size)


@dataclass(frozen=True)
class Cursor:
    """Maps a training step to the data position, from where a run (or its resume) started."""

    start: Position
    start_step: int
    step_size: int
    epoch_len: int

    def at(self, step: int) -> Position:
        return advance(self.start, step - self.start_step, self.step_size, self.epoch_len)


def step_positions(pos: Position, step_size: int, epoch_len: int) -> np.ndarray:
    """Offsets into the epoch's order of the step starting at ``pos`` (wrapping to pad the last step)."""
    return (pos.offset + np.arange(step_size)) % epoch_len


def mean_displacement(counts: list[int], seed: int, epoch: int, window: int) -> float:
    """Shuffle quality: mean distance, in samples, between a sample's place in the epoch's order and
    its place in the manifest's shard order (about a third of the epoch for a full random shuffle)."""
    order = epoch_order(counts, seed, epoch, window)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    stored = first[order[:, 0]] + order[:, 1]
    return float(np.abs(stored - np.arange(len(order))).mean()) if len(order) else 0.0
