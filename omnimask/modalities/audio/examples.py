"""Demo and test sounds: tones, chirps, notes and noise bursts, written as real audio files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf

PYAV_CODECS = {".mp3": "libmp3lame", ".m4a": "aac"}


def synth(kind: str, seconds: float, rate: int, g: np.random.Generator) -> np.ndarray:
    """One mono signal in [-1, 1], float32 ``[S]``: ``tone``, ``chirp``, ``notes``, ``bursts`` or ``silence``."""
    t = np.arange(int(seconds * rate)) / rate
    nyq = rate / 2
    if kind == "silence":
        return np.zeros_like(t, dtype=np.float32)
    if kind == "tone":
        f0 = g.uniform(110, min(1000, nyq / 4))
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5) if f0 * k < nyq * 0.9)
        x *= 0.5 + 0.5 * np.sin(2 * np.pi * g.uniform(0.5, 3) * t)  # tremolo
    elif kind == "chirp":
        f0, f1 = g.uniform(80, 300), g.uniform(min(2000, nyq * 0.5), nyq * 0.8)
        k = np.log(f1 / f0) / seconds
        x = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    elif kind == "notes":
        x = np.zeros_like(t)
        step = seconds / 6
        for i in range(6):
            f = 220 * 2 ** (int(g.integers(0, 24)) / 12)
            on = (t >= i * step) & (t < (i + 1) * step)
            env = np.exp(-5 * (t - i * step)) * on
            x += env * np.sin(2 * np.pi * f * t)
    elif kind == "bursts":
        x = g.normal(0, 1, t.shape) * (np.sin(2 * np.pi * g.uniform(1, 4) * t) > 0.3)
    else:
        raise ValueError(f"unknown sound kind {kind!r}")
    x = x / max(1e-9, float(np.abs(x).max())) * g.uniform(0.3, 0.9)
    return x.astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write float ``[S]`` or ``[S, C]`` samples: WAV/FLAC/OGG through soundfile, MP3/M4A through PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in PYAV_CODECS:
        sf.write(path, samples, rate)
        return
    planar = np.ascontiguousarray(np.atleast_2d(samples.T if samples.ndim == 2 else samples[None]), dtype=np.float32)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(PYAV_CODECS[suffix], rate=rate, layout=layout)
        frame_size = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        for start in range(0, planar.shape[1], frame_size):
            frame = av.AudioFrame.from_ndarray(planar[:, start : start + frame_size], format="fltp", layout=layout)
            frame.sample_rate = rate
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def build_demo_sounds(out: Path, num_clips: int, seed: int = 0) -> int:
    """``num_clips`` sounds of 1.5-4 s (tones, chirps, notes, noise bursts) at several sample rates,
    mono and stereo, as WAV, FLAC, OGG, MP3 and M4A, plus a silent file (kept) and three broken
    files; returns files written."""
    g = np.random.default_rng(seed)
    kinds = ["tone", "chirp", "notes", "bursts"]
    rates = [16000, 22050, 44100, 48000, 8000]
    exts = [".wav", ".flac", ".wav", ".ogg", ".flac", ".mp3", ".m4a"]
    for i in range(num_clips):
        kind, rate, ext = kinds[i % 4], rates[i % 5], exts[i % 7]
        x = synth(kind, g.uniform(1.5, 4.0), rate, g)
        if i % 3 == 0:  # stereo: the same sound, a little quieter on the right
            x = np.stack([x, 0.7 * x], axis=1)
        write_audio(out / kind / f"{kind}{i:04d}{ext}", x, rate)
    write_audio(out / "silence" / "silence.wav", synth("silence", 2.0, 16000, g), 16000)
    broken = out / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    good = next((out / "tone").glob("*.wav")).read_bytes()
    (broken / "truncated_header.wav").write_bytes(good[:30])
    (broken / "empty.flac").write_bytes(b"")
    (broken / "noise.mp3").write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return num_clips + 4
