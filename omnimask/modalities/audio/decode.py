"""Audio decoding for the loader: FLAC bytes -> a mono 16 kHz waveform window, seeded."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from omnimask.core.seeding import rng


@dataclass
class AudioAugmentConfig:
    """``data.augment`` for audio."""

    random_crop: bool = True
    """Clips longer than the tokenizer's ``target_length`` frames: a random window
    (else the start, as AudioMAE cuts its 10 s AudioSet clips)."""
    roll_mag: bool = False
    """AudioMAE's ``roll_mag_aug`` (on in its AudioSet pretraining script) as it behaves: a gain of
    Beta(10, 10) + 0.5. Its roll draws the shift from ``len()`` of a ``[1, S]`` tensor, which is
    always 0, so it never rolls; ``roll`` adds a real random roll."""
    roll: bool = False
    """Roll the waveform by a random shift (wrapping around)."""


class AudioDecoder:
    """``(members, seed) -> float32 [S]``: the waveform less the whole file's mean, then cut to at most
    ``max_samples`` (AudioMAE's ``_wav2fbank`` removes the file's mean before its filterbank and cuts
    frames after it; the filterbank's first frames depend on the first samples only, so cutting the
    waveform first gives the same frames with a window's worth of work)."""

    def __init__(self, augment: AudioAugmentConfig, sample_rate: int, max_samples: int):
        self.aug, self.sample_rate, self.max_samples = augment, sample_rate, max_samples

    def __call__(self, members: dict[str, bytes], seed: int) -> np.ndarray:
        data = members.get("flac") or members.get("wav")
        if data is None:
            raise ValueError(f"sample has no flac/wav member (members: {sorted(members)})")
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        if rate != self.sample_rate:
            raise ValueError(
                f"sample is at {rate} Hz, the tokenizer expects {self.sample_rate} Hz (preprocess with -o sample_rate=... to match)"
            )
        wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
        wave = wave - wave.mean()
        g = rng(seed, "audio_augment")
        if wave.shape[0] > self.max_samples:
            start = int(g.integers(0, wave.shape[0] - self.max_samples + 1)) if self.aug.random_crop else 0
            wave = wave[start : start + self.max_samples]
        if self.aug.roll:
            wave = np.roll(wave, int(g.integers(wave.shape[0])))
        if self.aug.roll_mag:
            wave = wave * np.float32(g.beta(10, 10) + 0.5)
        return np.ascontiguousarray(wave, dtype=np.float32)
