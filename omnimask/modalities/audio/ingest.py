"""Audio ingest: decode any common format, keep one channel, resample, store as FLAC.

WAV, FLAC, OGG and AIFF go through soundfile (libsndfile); MP3, M4A/AAC, Opus
and other containers through PyAV (FFmpeg). A multi-channel file keeps its first
channel (or the average of its channels), resampled to ``sample_rate`` with
torchaudio's windowed-sinc resampler, then stored as 16-bit FLAC (lossless for
16-bit sources). Silent but valid files are kept (``silent: true`` in their metadata).

Memory is bounded per input: a small compressed file can decode to hours (FLAC or
Opus of silence compress ~1000x; a FLAC may not declare its length at all), so the
header's length is checked against ``max_seconds`` and ``max_decoded_bytes`` before
decoding, and the decoded frames are counted while decoding, which stops as soon as
they pass a limit. Blocks are reduced to the kept channel as they come, and the
resampler runs on chunks, so one input's ingest takes at most about
``64 MB + 2 x max(decoded bytes, stored float32 bytes)`` (see ``docs/modalities.md``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Literal

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as T

from omnimask.core.interfaces import EncodedSample, QuarantineError
from omnimask.core.limits import over_limit

SOUNDFILE_EXTS = {"wav", "wave", "flac", "ogg", "oga", "aiff", "aif"}

FLOAT32 = 4
"""Bytes of one decoded sample (the float32 that ``max_decoded_bytes`` counts)."""

BLOCK_BYTES = 1 << 22
"""What soundfile decodes at a time (4 MB of float32, all channels): sized in bytes, not frames, so that a header
claiming thousands of channels cannot make the block itself a bomb."""

UNKNOWN_FRAMES = 1 << 62
"""libsndfile's frame count of a stream that does not declare its length (a FLAC with total_samples 0: SF_COUNT_MAX)."""

DECLARED_SLACK = (1.1, 1.0)
"""``(factor, seconds)``: a header's length quarantines before decoding only past ``limit * factor + seconds``.
Containers estimate lengths (an MP3 without a Xing header: from its bitrate) and count encoder priming (Opus
pre-skip, AAC priming), so a file near a limit is decided by counting what it decodes to instead."""

RESAMPLE_CHUNK = 1 << 20
"""Input samples resampled at a time (4 MB of float32): torchaudio's convolution takes several times its input
in temporaries (4.6x at 48 kHz, 15x at 8 kHz), which chunks bound."""

MAX_FILTER_TAPS = 1 << 19
"""Most taps of the resampling filter bank (phases x taps per phase). Its size depends on the two rates alone:
160 x 475 taps from 44.1 kHz, but 16000 x 44135 from a 44101 Hz header, 11 GB while torchaudio builds it."""


@dataclass
class AudioIngestConfig:
    """Options of ``omnimask preprocess audio``."""

    sample_rate: int = 16000
    """Rate of the stored audio (AudioMAE: 16 kHz)."""
    subtype: Literal["PCM_16", "PCM_24"] = "PCM_16"
    """FLAC sample format."""
    max_seconds: float | None = 600.0
    """Quarantine longer files, checked before and while decoding (None: no limit); the loader crops 10 s windows."""
    max_decoded_bytes: int | None = 2**30
    """Quarantine files whose decoded float32 samples (all channels, at the source rate) take more (None: no limit)."""
    channels: Literal["first", "mean"] = "first"
    """What a multi-channel file keeps: its first channel, as AudioMAE's filterbank reads it (kaldi.fbank's
    channel 0), or the average of its channels (a down-mix)."""

    def __post_init__(self) -> None:
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if self.max_seconds is not None and not 0 < self.max_seconds < math.inf:
            raise ValueError(f"max_seconds must be > 0 and finite (or null for no limit), got {self.max_seconds}")
        if self.max_decoded_bytes is not None and self.max_decoded_bytes < 1:
            raise ValueError(f"max_decoded_bytes must be >= 1 (or null for no limit), got {self.max_decoded_bytes}")


class NotDecodable(Exception):
    """This library cannot read the input (the other one may); unlike a QuarantineError, which is final."""


def frames_within(seconds: float, rate: int) -> int:
    """The most frames ``n`` with ``n / rate <= seconds``: the comparison a reason states, free of the rounding
    of ``seconds * rate``."""
    n = math.floor(seconds * rate)
    if n >= 1 << 52:  # past float precision (and past any file)
        return n
    while (n + 1) / rate <= seconds:
        n += 1
    while n > 0 and n / rate > seconds:
        n -= 1
    return n


@dataclass
class DecodeBudget:
    """What one input may decode to under ``max_seconds`` and ``max_decoded_bytes``, counted in frames (one
    sample per channel) at the source ``rate`` as it decodes. Where both limits apply, the one allowing fewer
    frames decides, and is the option a reason names."""

    opts: AudioIngestConfig
    rate: int
    channels: int
    frames: int = 0

    def limits(self) -> list[tuple[int, str]]:
        """``(most frames, option)`` of each limit that applies, fewest frames first."""
        found = []
        if self.opts.max_seconds is not None:
            found.append((frames_within(self.opts.max_seconds, self.rate), "max_seconds"))
        if self.opts.max_decoded_bytes is not None:
            found.append((self.opts.max_decoded_bytes // (FLOAT32 * self.channels), "max_decoded_bytes"))
        return sorted(found)

    def frames_left(self) -> int | None:
        """Frames that may still be decoded without passing a limit (None: no limit)."""
        found = self.limits()
        return max(0, found[0][0] - self.frames) if found else None

    def check_declared(self, frames: float) -> None:
        """Quarantine before decoding a file whose header declares ``frames`` well past a limit (DECLARED_SLACK)."""
        factor, seconds = DECLARED_SLACK
        for most, option in self.limits():
            if frames > most * factor + seconds * self.rate:
                raise self.reason(option, frames, declared=True)

    def add(self, frames: int, channels: int) -> None:
        """Count a decoded block of ``frames`` x ``channels``; quarantine as soon as the count passes a limit.
        (FFmpeg's resampler keeps the first frame's layout, so only the first block may change ``channels``.)"""
        self.frames += frames
        self.channels = channels
        for most, option in self.limits():
            if self.frames > most:
                raise self.reason(option, self.frames, declared=False)

    def reason(self, option: str, frames: float, *, declared: bool) -> QuarantineError:
        """The over_limit reason for ``option``: the header's figure, or what decoding had reached when it stopped."""
        source = "declared by the header" if declared else "decoding stopped there"
        if option == "max_seconds":
            return over_limit(
                "duration", f"{'' if declared else 'more than '}{frames / self.rate:,.1f} s ({source})", option, self.opts.max_seconds
            )
        decoded = int(frames) * FLOAT32 * self.channels
        return over_limit(
            f"decoded size (float32, {self.channels} channels)",
            f"{'' if declared else 'more than '}{decoded:,} bytes ({source})",
            option,
            self.opts.max_decoded_bytes,
        )


@dataclass
class Decoded:
    """One input decoded to the channel it keeps: ``mono [S]`` float32 at the source ``rate``."""

    mono: np.ndarray
    rate: int
    channels: int
    format: str
    peak: float
    """Largest absolute sample over all channels."""


GROWTH = 1.25
"""Factor by which the kept channel's buffer grows: ``ndarray.resize`` zero-fills what it adds, so the buffer's
resident size is at most this times what it holds."""


@dataclass
class MonoCollector:
    """Takes decoded blocks as they come: counts them against the budget, checks their values, and keeps only the
    channel ``opts.channels`` asks for, so the memory held grows with one channel, not all of them."""

    budget: DecodeBudget
    how: Literal["first", "mean"]
    kept: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    size: int = 0
    peak: float = 0.0

    def add(self, planar: np.ndarray) -> None:
        """One block ``[C, n]`` float32 (a view is fine: what is kept is copied out of it)."""
        channels, frames = planar.shape
        if frames == 0:
            return
        self.budget.add(frames, channels)
        if not np.isfinite(planar).all():
            raise QuarantineError("NaN or infinite sample values")
        self.peak = max(self.peak, float(np.abs(planar).max()))
        self.keep(planar[0] if self.how == "first" else planar.mean(axis=0, dtype=np.float32))

    def keep(self, samples: np.ndarray) -> None:
        """Append ``samples [n]`` to the kept channel. Its buffer grows in place: a large block's realloc remaps
        its pages instead of copying them, so growing never holds two copies, as collecting parts and
        concatenating them would."""
        end = self.size + len(samples)
        if end > len(self.kept):
            self.kept.resize(max(end, int(len(self.kept) * GROWTH)), refcheck=False)
        self.kept[self.size : end] = samples
        self.size = end

    def result(self, fmt: str) -> Decoded:
        """The kept channel ``[S]``, its buffer cut to what it holds."""
        self.kept.resize(self.size, refcheck=False)
        return Decoded(self.kept, self.budget.rate, self.budget.channels, fmt, self.peak)


def checked_rate(rate: int | None) -> int:
    """The source rate, refused when a header gives none (every duration divides by it)."""
    if not rate or rate <= 0:
        raise QuarantineError(f"invalid sample rate {rate!r}")
    return int(rate)


def read_soundfile(file: BinaryIO, opts: AudioIngestConfig) -> Decoded:
    """Decode through libsndfile, a block of BLOCK_BYTES at a time, checking its declared length first."""
    with sf.SoundFile(file) as f:
        budget = DecodeBudget(opts, checked_rate(f.samplerate), f.channels)
        if 0 < f.frames < UNKNOWN_FRAMES:
            budget.check_declared(f.frames)
        collector = MonoCollector(budget, opts.channels)
        block = np.empty((max(1, BLOCK_BYTES // (FLOAT32 * f.channels)), f.channels), np.float32)
        while True:
            left = budget.frames_left()
            size = len(block) if left is None else min(len(block), left + 1)  # one frame past a limit tells
            got = f.read(size, dtype="float32", always_2d=True, out=block[:size])
            if not len(got):
                return collector.result(f.format)
            collector.add(got.T)


def declared_frames(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int) -> float | None:
    """Frames the container declares for ``stream`` (its own duration, else the container's), None if neither."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base) * rate
    if container.duration:
        return container.duration / av.time_base * rate
    return None


def read_pyav(file: BinaryIO, opts: AudioIngestConfig) -> Decoded:
    """Decode the first audio stream through FFmpeg, checking its declared length first and stopping as soon as
    the decoded frames pass a limit."""
    with av.open(file) as container:
        if not container.streams.audio:
            raise NotDecodable("no audio stream")
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise NotDecodable("the audio stream's codec has no decoder")
        rate = checked_rate(stream.codec_context.sample_rate or stream.rate)
        budget = DecodeBudget(opts, rate, max(1, stream.codec_context.channels))
        declared = declared_frames(container, stream, rate)
        if declared:
            budget.check_declared(declared)
        collector = MonoCollector(budget, opts.channels)
        resampler = av.AudioResampler(format="fltp")  # planar float, same layout and rate
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                collector.add(out.to_ndarray())
        for out in resampler.resample(None):
            collector.add(out.to_ndarray())
        return collector.result(container.format.name)


def decode_audio(path: Path, file: BinaryIO, opts: AudioIngestConfig) -> Decoded:
    """Decode with the library suited to the extension; the other one is tried when it cannot read the file.
    A QuarantineError (a limit passed, bad values) is final."""
    readers = [read_soundfile, read_pyav]
    if path.suffix.lower().lstrip(".") not in SOUNDFILE_EXTS:
        readers.reverse()
    errors = []
    for read in readers:
        file.seek(0)
        try:
            return read(file, opts)
        except NotDecodable as e:
            errors.append(str(e))
        except sf.LibsndfileError as e:
            errors.append(f"libsndfile: {e.error_string}")
        except (av.FFmpegError, RuntimeError, ValueError, EOFError) as e:
            errors.append(f"FFmpeg: {e.strerror if isinstance(e, av.FFmpegError) else e}")
    raise QuarantineError(f"not decodable audio ({'; '.join(errors)})")


def resampling_ratio(rate: int, target: int) -> tuple[int, int]:
    """``(orig, new)`` to resample ``rate`` to ``target`` by: the ratio reduced, or, where its filter bank
    would pass MAX_FILTER_TAPS (about new x orig taps), the nearest ratio within it (odd rates such as
    11127 or 22254 Hz: a pitch change near 1e-6; every common rate is exact)."""
    exact = Fraction(rate, target)
    if exact.numerator * exact.denominator <= MAX_FILTER_TAPS:
        return exact.numerator, exact.denominator
    near = exact.limit_denominator(max(1, math.isqrt(MAX_FILTER_TAPS * target // rate)))
    return max(1, near.numerator), near.denominator


def resample(mono: np.ndarray, rate: int, target: int, *, chunk: int = RESAMPLE_CHUNK) -> np.ndarray:
    """``mono [S]`` float32 at ``rate`` -> ``[ceil(S * new / orig)]`` at ``target``: torchaudio's windowed sinc
    (``AF.resample``'s defaults and float32 filter) over about ``chunk`` input samples at a time.

    A chunk starts on a whole period of ``orig`` samples, so its outputs keep their phases, and carries ``width``
    samples of context each side, so they see the same inputs as in one call over the whole signal."""
    orig, new = resampling_ratio(rate, target)
    if orig == new:
        return mono
    resampler = T.Resample(orig, new, dtype=torch.float32)
    periods = max(1, chunk // orig)
    context = -(-resampler.width // orig) * orig
    out = np.empty(math.ceil(new * len(mono) / orig), np.float32)
    signal = torch.from_numpy(mono)
    for start in range(0, len(mono), periods * orig):
        lo = max(0, start - context)
        piece = resampler(signal[lo : start + periods * orig + resampler.width])
        skip = (start - lo) // orig * new
        kept = piece[skip : skip + periods * new].numpy()
        at = start // orig * new
        out[at : at + len(kept)] = kept
    return out


def encode_audio_file(path: Path, opts: AudioIngestConfig) -> EncodedSample:
    if path.stat().st_size == 0:
        raise QuarantineError("empty file")
    with path.open("rb") as file:  # read as it decodes: the compressed file is not held either
        decoded = decode_audio(path, file, opts)
    if len(decoded.mono) == 0:
        raise QuarantineError("no audio samples")
    duration = len(decoded.mono) / decoded.rate
    mono = resample(decoded.mono, decoded.rate, opts.sample_rate)
    decoded.mono = None  # the source-rate copy goes before the FLAC is made
    np.clip(mono, -1.0, 1.0, out=mono)
    buf = io.BytesIO()
    sf.write(buf, mono, opts.sample_rate, format="FLAC", subtype=opts.subtype)
    meta = {
        "sample_rate": opts.sample_rate,
        "num_samples": int(mono.shape[0]),
        "duration": round(mono.shape[0] / opts.sample_rate, 6),
        "orig_sample_rate": decoded.rate,
        "orig_channels": decoded.channels,
        "orig_format": decoded.format,
        "orig_duration": round(duration, 6),
        "peak": round(decoded.peak, 6),
        "silent": decoded.peak == 0.0,
    }
    return EncodedSample(ext="flac", payload=buf.getvalue(), meta=meta)
