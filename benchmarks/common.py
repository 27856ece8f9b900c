"""Helpers shared by the loader benchmarks: timing a loader, the decode-only pipeline."""

from __future__ import annotations

import time
from typing import Any, Iterator

from torch.utils.data import DataLoader

from omnimask.pipelines.loader import SamplePipeline
from omnimask.seeding import derive_seed


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


def rate(loader: DataLoader, batches: int, warmup: int = 3) -> float:
    """Samples/s over ``batches`` batches after ``warmup`` batches."""
    return throughput(loader, batches, warmup)[0]


class DecodeOnly(SamplePipeline):
    """The modality's loader decoder alone (decode + augment), without tokenize, mask and target."""

    def __call__(self, key: str, members: dict[str, bytes], epoch: int) -> dict[str, Any]:
        sample = self.decode(members, derive_seed(self.seed, epoch, key, "decode"))
        return {"key": key, "sample": sample}


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"keys": [s["key"] for s in samples], "sample": [s["sample"] for s in samples]}
