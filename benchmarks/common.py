"""Helpers shared by the loader benchmarks: timing a loader, the decode-only pipeline and its loader."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from torch.utils.data import DataLoader

from benchmarks.turns import take_turns
from omnimask.core.recipe import Recipe
from omnimask.data.loader import SamplePipeline, ShardStream


def endless(loader: DataLoader) -> Iterator[Any]:
    """Batches of ``loader`` across epochs (map-style baselines end with their epoch)."""
    while True:
        yield from loader


def timed_batches(loader: DataLoader, batches: int, warmup: int = 3) -> tuple[int, int, float]:
    """Samples, real tokens (of padded batches, ``valid``; 0 for grid batches) and seconds over ``batches``
    batches after ``warmup`` batches (workers started, caches warm)."""
    it = endless(loader)
    for _ in range(warmup):
        next(it)
    n = tokens = 0
    t = time.perf_counter()
    for _ in range(batches):
        b = next(it)
        n += len(b["keys"]) if isinstance(b, dict) else len(b[0])
        if isinstance(b, dict) and "valid" in b:
            tokens += int(b["valid"].sum())
    return n, tokens, time.perf_counter() - t


def throughputs_in_turn(loaders: dict[str, DataLoader], batches: int, rounds: int = 3, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """Samples/s and tokens/s of each loader over ``rounds`` bursts of ``batches // rounds`` batches taken in turn
    (:func:`~benchmarks.turns.take_turns`), each loader's samples and seconds summed over its bursts. (Keeping each
    loader's best burst instead let one lucky burst decide: the image loader's tokenize+mask+target cost read 2.6%
    one day and 12.5% the next, where the stages timed alone cost 4.4%.)"""
    burst = max(1, batches // rounds)
    runs = take_turns({name: functools.partial(timed_batches, loader, burst, warmup) for name, loader in loaders.items()}, rounds)
    out = {}
    for name, bursts in runs.items():
        n, tokens, elapsed = (sum(column) for column in zip(*bursts))
        out[name] = (n / elapsed, tokens / elapsed)
    return out


class DecodeOnly(SamplePipeline):
    """The modality's loader decoder alone (decode + augment), without tokenize, mask and target."""

    def finish(self, key: str, sample: Any, seed: Callable[[str], int]) -> dict[str, Any]:
        return {"key": key, "sample": sample}


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"keys": [s["key"] for s in samples], "sample": [s["sample"] for s in samples]}


def decode_only_loader(recipe: Recipe, shards: Path, batch_size: int, workers: int) -> DataLoader:
    """The decode + augment baseline: ``recipe``'s loader decoder alone over ``shards`` in the same order,
    batches of decoded samples as lists (:func:`collate_samples`)."""
    return DataLoader(
        ShardStream(shards, DecodeOnly(recipe, 0), seed=0, batch_size=batch_size),
        collate_fn=collate_samples,
        drop_last=True,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )
