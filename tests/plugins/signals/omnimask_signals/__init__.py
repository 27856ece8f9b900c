"""A plugin modality written against omnimask's public interfaces only: 1-D signals stored as ``.npy``
files, a random window of each, cut into patches of ``patch`` values. omnimask finds the modality and its
tokenizer by entry point (``pyproject.toml``); ``omnimask check-plugin signal --kind modality --recipe
signal_tiny.yaml`` checks them on the example inputs :meth:`SignalModality.example_inputs` writes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnimask.core.interfaces import EncodedSample, Modality, QuarantineError, Tokenizer, TokenLayout
from omnimask.core.seeding import rng


@dataclass
class SignalIngestConfig:
    min_length: int = 64
    """Shortest signal kept (values)."""


@dataclass
class SignalAugmentConfig:
    window: int = 64
    """Values cut from each signal at a seeded random offset."""


class SignalTokenizer(Tokenizer):
    """Window ``[L]`` float32 -> tokens ``[L / patch, patch]``."""

    @dataclass
    class Config:
        length: int = 64
        patch: int = 8

    def __init__(self, cfg: Config):
        if cfg.length % cfg.patch:
            raise ValueError(f"length ({cfg.length}) must be a multiple of patch ({cfg.patch})")
        self.layout = TokenLayout(grid=(cfg.length // cfg.patch,), token_dim=cfg.patch)

    def __call__(self, sample: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32).reshape(self.layout.grid[0], -1))


class SignalDecoder:
    """Shard members -> a window ``[window]`` of the signal, at an offset drawn from the sample's seed."""

    def __init__(self, augment: SignalAugmentConfig):
        self.window = augment.window

    def __call__(self, members: dict[str, bytes], seed: int) -> np.ndarray:
        signal = np.load(io.BytesIO(members["npy"]), allow_pickle=False)
        start = int(rng(seed, "window").integers(0, len(signal) - self.window + 1))
        return signal[start : start + self.window]


class SignalModality(Modality):
    """1-D float signals, one per ``.npy`` file."""

    name = "signal"
    IngestConfig = SignalIngestConfig
    AugmentConfig = SignalAugmentConfig
    tokenizer_types = (SignalTokenizer,)

    def encode_file(self, path: Path, options: SignalIngestConfig) -> EncodedSample:
        try:
            signal = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise QuarantineError(f"not a .npy array: {e}") from None
        if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.floating):
            raise QuarantineError(f"expected a 1-D float array, got {signal.dtype} {list(signal.shape)}")
        if len(signal) < options.min_length:
            raise QuarantineError(f"{len(signal)} values, fewer than min_length {options.min_length}")
        if not np.isfinite(signal).all():
            raise QuarantineError("holds NaN or infinite values")
        out = io.BytesIO()
        np.save(out, signal.astype(np.float32))
        return EncodedSample("npy", out.getvalue(), {"length": len(signal)}, size=len(signal))

    def decoder(self, augment: SignalAugmentConfig, tokenizer: Tokenizer) -> SignalDecoder:
        return SignalDecoder(augment)

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        """``count`` noisy sines of 96-256 values, plus a 2-D array and a too-short signal (quarantined)."""
        out.mkdir(parents=True, exist_ok=True)
        g = np.random.default_rng(seed)
        for i in range(count):
            t = np.arange(int(g.integers(96, 257)))
            wave = np.sin(2 * np.pi * t / g.uniform(8, 40) + g.uniform(0, 2 * np.pi)) + 0.1 * g.standard_normal(len(t))
            np.save(out / f"signal-{i:04d}.npy", wave.astype(np.float32))
        np.save(out / "broken-2d.npy", np.zeros((4, 4), np.float32))
        np.save(out / "broken-short.npy", np.zeros(10, np.float32))
        return count + 2
