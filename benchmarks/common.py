"""Helpers shared by the loader benchmarks: timing a loader, the decode-only pipeline."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from torch.utils.data import DataLoader

from omnimask.pipelines.loader import SamplePipeline


def endless(loader: DataLoader) -> Iterator[Any]:
    """Batches of ``loader`` across epochs (map-style baselines end with their epoch)."""
    while True:
        yield from loader


def throughput(loader: DataLoader, batches: int, warmup: int = 3) -> tuple[float, float]:
    """Samples/s and tokens/s (real tokens of padded batches, ``valid``; 0 for grid batches) over
    ``batches`` batches after ``warmup`` batches (workers started, caches warm)."""
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
    elapsed = time.perf_counter() - t
    return n / elapsed, tokens / elapsed


def best_throughputs(loaders: dict[str, DataLoader], batches: int, rounds: int = 3, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """:func:`throughput` of each loader, measured in ``rounds`` alternating bursts of ``batches // rounds``
    batches (a, b, c, a, b, c, ...), the best burst of each kept: on a shared machine whose speed drifts,
    this keeps a slow minute from landing on one loader only."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, loader in loaders.items():
            got = throughput(loader, max(1, batches // rounds), warmup)
            if name not in best or got[0] > best[name][0]:
                best[name] = got
    return best


class DecodeOnly(SamplePipeline):
    """The modality's loader decoder alone (decode + augment), without tokenize, mask and target."""

    def finish(self, key: str, sample: Any, seed: Callable[[str], int]) -> dict[str, Any]:
        return {"key": key, "sample": sample}


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"keys": [s["key"] for s in samples], "sample": [s["sample"] for s in samples]}
