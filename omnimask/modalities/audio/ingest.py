"""Audio ingest: decode any common format, down-mix to mono, resample, store as FLAC.

WAV, FLAC, OGG and AIFF go through soundfile (libsndfile); MP3, M4A/AAC, Opus
and other containers through PyAV (FFmpeg). Channels are averaged to mono and
the result resampled to ``sample_rate`` with torchaudio's windowed-sinc
resampler, then stored as 16-bit FLAC (lossless for 16-bit sources). Silent
but valid files are kept (``silent: true`` in their metadata).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from omnimask.modalities.base import EncodedSample, QuarantineError

SOUNDFILE_EXTS = {"wav", "wave", "flac", "ogg", "oga", "aiff", "aif"}


@dataclass
class AudioIngestConfig:
    """Options of ``omnimask preprocess audio``."""

    sample_rate: int = 16000
    """Rate of the stored audio (AudioMAE: 16 kHz)."""
    subtype: Literal["PCM_16", "PCM_24"] = "PCM_16"
    """FLAC sample format."""
    max_seconds: Optional[float] = None
    """Quarantine longer files (None: keep everything; the loader crops long clips)."""
    channels: Literal["first", "mean"] = "first"
    """What a multi-channel file keeps: its first channel, as AudioMAE's filterbank reads it (kaldi.fbank's
    channel 0), or the average of its channels (a down-mix)."""

    def __post_init__(self) -> None:
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


def read_soundfile(data: bytes) -> tuple[np.ndarray, int, str]:
    """``(samples [S, C] float32, rate, format)`` through libsndfile."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        return f.read(dtype="float32", always_2d=True), f.samplerate, f.format


def read_pyav(data: bytes) -> tuple[np.ndarray, int, str]:
    """``(samples [S, C] float32, rate, format)`` of the first audio stream through FFmpeg."""
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            raise QuarantineError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # planar float, same layout and rate
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
        rate = stream.codec_context.sample_rate or stream.rate
        if not chunks:
            return np.zeros((0, 1), np.float32), rate, container.format.name
        return np.concatenate(chunks, axis=1).T.astype(np.float32), rate, container.format.name


def decode_audio(path: Path, data: bytes) -> tuple[np.ndarray, int, str]:
    """Decode with the library suited to the extension; the other one is tried when it fails."""
    readers = [read_soundfile, read_pyav]
    if path.suffix.lower().lstrip(".") not in SOUNDFILE_EXTS:
        readers.reverse()
    errors = []
    for read in readers:
        try:
            return read(data)
        except QuarantineError as e:
            errors.append(str(e))
        except sf.LibsndfileError as e:
            errors.append(f"libsndfile: {e.error_string}")
        except (av.FFmpegError, RuntimeError, ValueError, EOFError) as e:
            errors.append(f"FFmpeg: {e.strerror if isinstance(e, av.FFmpegError) else e}")
    raise QuarantineError(f"not decodable audio ({'; '.join(errors)})")


def encode_audio_file(path: Path, opts: AudioIngestConfig) -> EncodedSample:
    data = path.read_bytes()
    if not data:
        raise QuarantineError("empty file")
    samples, rate, fmt = decode_audio(path, data)
    if samples.shape[0] == 0:
        raise QuarantineError("no audio samples")
    if not np.isfinite(samples).all():
        raise QuarantineError("NaN or infinite sample values")
    duration = samples.shape[0] / rate
    if opts.max_seconds is not None and duration > opts.max_seconds:
        raise QuarantineError(f"too long: {duration:.1f}s exceeds max_seconds={opts.max_seconds}")
    mono = samples[:, 0] if opts.channels == "first" else samples.mean(axis=1)
    if rate != opts.sample_rate:
        mono = AF.resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, opts.sample_rate).numpy()
    mono = np.clip(mono, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, mono, opts.sample_rate, format="FLAC", subtype=opts.subtype)
    peak = float(np.abs(samples).max())
    meta = {
        "sample_rate": opts.sample_rate,
        "num_samples": int(mono.shape[0]),
        "duration": round(mono.shape[0] / opts.sample_rate, 6),
        "orig_sample_rate": int(rate),
        "orig_channels": int(samples.shape[1]),
        "orig_format": fmt,
        "orig_duration": round(duration, 6),
        "peak": round(peak, 6),
        "silent": peak == 0.0,
    }
    return EncodedSample(ext="flac", payload=buf.getvalue(), meta=meta)
