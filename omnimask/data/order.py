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

With a token budget (:class:`BudgetPlan`, for variable-length samples) the
epoch's order is cut into batches of different sizes instead: each run of
``sort_window`` positions is sorted by sample length, cut greedily into batches
whose padded size (samples x longest) stays within the budget, and those
batches are shuffled. A step is then ``world_size`` consecutive batches, and
``offset`` counts batches. The batches do not depend on the number of ranks,
so a resume with another layout continues exactly too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np

from omnimask.core.seeding import rng


def shard_order(seed: int, epoch: int, num_shards: int) -> list[int]:
    """The seeded shard permutation of ``epoch`` (shared by the torch and Ray Data loaders)."""
    return [int(i) for i in rng(seed, epoch, "shard_order").permutation(num_shards)]


def shard_windows(seed: int, epoch: int, num_shards: int, window: int) -> list[list[int]]:
    """The shard indices of each window of ``epoch``: the seeded shard order cut into runs of ``window``."""
    order = shard_order(seed, epoch, num_shards)
    return [order[start : start + window] for start in range(0, len(order), max(1, window))]


def window_order(counts: list[int], seed: int, epoch: int, window_index: int) -> np.ndarray:
    """``[M, 2]`` int64 rows ``(i, j)``, sample ``j`` of the window's ``i``-th shard, in the window's seeded
    order; ``counts`` are the sample counts of the window's shards (shared by the torch and Ray Data loaders)."""
    rows = (
        np.concatenate([np.stack([np.full(c, i), np.arange(c)], axis=1) for i, c in enumerate(counts)])
        if sum(counts)
        else np.zeros((0, 2), np.int64)
    )
    return rows[rng(seed, epoch, window_index, "window_shuffle").permutation(len(rows))].astype(np.int64)


def epoch_order(counts: list[int], seed: int, epoch: int, window: int) -> np.ndarray:
    """``[M, 2]`` int64 rows ``(shard index, sample index in shard)`` in the order of ``epoch``."""
    parts = []
    for w, shards in enumerate(shard_windows(seed, epoch, len(counts), window)):
        local = window_order([counts[s] for s in shards], seed, epoch, w)
        parts.append(np.stack([np.asarray(shards, dtype=np.int64)[local[:, 0]], local[:, 1]], axis=1))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), np.int64)


@dataclass(frozen=True)
class Position:
    """Where the next training step starts: ``offset`` into the order of ``epoch``."""

    epoch: int = 0
    offset: int = 0


def advance(pos: Position, steps: int, step_size: int, epoch_len: int | Callable[[int], int]) -> Position:
    """The position ``steps`` steps of ``step_size`` positions after ``pos``; ``epoch_len`` is the
    number of positions of every epoch, or a function of the epoch (token-budget batches).

    A step that reaches the end of an epoch is padded and the next epoch starts at 0.
    """
    length = epoch_len if callable(epoch_len) else (lambda epoch: epoch_len)
    while True:
        left = -(-(length(pos.epoch) - pos.offset) // step_size)  # steps to the end of this epoch
        if steps < left:
            return Position(pos.epoch, pos.offset + steps * step_size)
        steps -= left
        if not callable(epoch_len):  # every epoch alike: skip whole epochs at once
            per_epoch = -(-epoch_len // step_size)
            return Position(pos.epoch + 1 + steps // per_epoch, (steps % per_epoch) * step_size)
        pos = Position(pos.epoch + 1, 0)


class FixedPlan:
    """Steps of ``world_size x batch_size`` samples; rank ``r`` takes the ``r``-th block of each."""

    def __init__(self, epoch_samples: int, batch_size: int, world_size: int):
        self.epoch_samples, self.batch_size, self.world_size = epoch_samples, batch_size, world_size
        self.step_size = batch_size * world_size

    def epoch_len(self, epoch: int) -> int:
        return self.epoch_samples

    def rank_batch(self, pos: Position, rank: int) -> np.ndarray:
        """Offsets into the epoch's order of rank ``rank``'s batch of the step at ``pos``."""
        return step_positions(pos, self.step_size, self.epoch_samples)[rank * self.batch_size : (rank + 1) * self.batch_size]


def budget_batches(tokens: np.ndarray, max_tokens: int, sort_window: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Batches (arrays of offsets into the epoch's order) for samples of ``tokens [M]`` tokens, in
    order: each run of ``sort_window`` positions sorted by length, cut greedily into batches with
    ``len(batch) * longest <= max_tokens`` (a longer sample alone), the run's batches shuffled."""
    batches: list[np.ndarray] = []
    for run, start in enumerate(range(0, len(tokens), sort_window)):
        idx = start + np.argsort(tokens[start : start + sort_window], kind="stable")
        lengths = tokens[idx]
        cut, run_batches = 0, []
        while cut < len(idx):
            # ascending lengths: the padded size of idx[cut:cut + k] is k * lengths[cut + k - 1], rising in k
            padded = np.arange(1, len(idx) - cut + 1) * lengths[cut:]
            k = max(1, int(np.searchsorted(padded, max_tokens, side="right")))
            run_batches.append(idx[cut : cut + k])
            cut += k
        order = rng(seed, epoch, run, "budget_batches").permutation(len(run_batches))
        batches += [run_batches[i] for i in order]
    return batches


class BudgetPlan:
    """Token-budget batches (see the module docstring); rank ``r`` takes batch ``offset + r`` of a step."""

    def __init__(self, counts: list[int], tokens: np.ndarray, seed: int, window: int, world_size: int, max_tokens: int, sort_window: int):
        self.counts, self.tokens, self.seed, self.window = counts, tokens, seed, window
        self.world_size = self.step_size = world_size
        self.max_tokens, self.sort_window = max_tokens, sort_window
        self.first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._cache: dict[int, list[np.ndarray]] = {}

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch`` (the two epochs computed last are kept)."""
        if epoch not in self._cache:
            order = epoch_order(self.counts, self.seed, epoch, self.window)
            tokens = self.tokens[self.first[order[:, 0]] + order[:, 1]]
            self._cache[epoch] = budget_batches(tokens, self.max_tokens, self.sort_window, self.seed, epoch)
            while len(self._cache) > 2:
                del self._cache[next(iter(self._cache))]
        return self._cache[epoch]

    def epoch_len(self, epoch: int) -> int:
        return len(self.batches(epoch))

    def rank_batch(self, pos: Position, rank: int) -> np.ndarray:
        batches = self.batches(pos.epoch)
        return batches[(pos.offset + rank) % len(batches)]


Plan = Union[FixedPlan, BudgetPlan]


@dataclass(frozen=True)
class Cursor:
    """Maps a training step to the data position, from where a run (or its resume) started."""

    start: Position
    start_step: int
    plan: Plan

    def at(self, step: int) -> Position:
        return advance(self.start, step - self.start_step, self.plan.step_size, self.plan.epoch_len)


class FollowsTraining:
    """Mixin of a loader whose ``state_dict`` needs the number of trained steps. A loader runs ahead of training
    (prefetching), so it cannot count them itself; the training loop hands it a function
    (``loader.follow(lambda: trainer.global_step)``), else the count stays where the loader started (``start_step``)."""

    start_step: int = 0
    _trained: Optional[Callable[[], int]] = None

    def follow(self, steps: Callable[[], int]) -> None:
        """Take the trained step count from ``steps`` (the trainer's ``global_step``) for ``state_dict``."""
        self._trained = steps

    def trained_steps(self) -> int:
        return self._trained() if self._trained is not None else self.start_step


RESUME_MUST_MATCH = {
    "loader": "data.loader: the torch loader's position is an offset into the epoch's order, the Ray Data loader's a count of batches",
    "seed": "seed: every epoch's order is drawn from it",
    "max_tokens": "data.max_tokens: with a token budget the position counts batches of that budget",
}
"""The layout keys a checkpoint's data state must share with the run that resumes from it, and why."""


def check_resume(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse, with the key and the reason, a resume the saved data state cannot carry over to. Keys absent from
    ``saved`` (checkpoints written before they were recorded) pass; ranks, workers and batch size may change."""
    for key, why in RESUME_MUST_MATCH.items():
        if key in saved and saved[key] != current[key]:
            raise ValueError(
                f"cannot resume: the checkpoint's data position was taken with {key}={saved[key]!r}, "
                f"this run has {current[key]!r}; resume with the same value ({why})"
            )


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
