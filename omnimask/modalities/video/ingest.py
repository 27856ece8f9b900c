"""Video ingest: validate a file by decoding every frame, record its metadata, keep it encoded.

The clip stays encoded in the shard (decoding happens on the fly in the
loader). The original bytes pass through unless ``resize`` asks for a smaller
short side, ``reencode`` is set, or the container has no seek index (MPEG-TS,
MPEG-PS, FLV, ...); then the video stream is re-encoded to
H.264 MP4 with a keyframe every ``keyframe_interval`` frames, so that the
loader's seeks land close to the frames it wants. Audio streams are dropped
in a re-encode.

A truncated file is quarantined. MP4/AVI list their frame counts; Matroska/WebM, FLV and
fragmented MP4 declare only durations (the Segment header survives a cut), so what the file holds is
compared with those. MPEG-TS declares nothing (FFmpeg's duration of a TS is read off its own last
timestamps, so a cut file agrees with itself): a TS is caught only by the traces a cut leaves, a
partial last transport packet or a last frame whose data stops short (decoded with errors). A TS cut
exactly between two transport packets that also ends a frame cannot be told from a shorter clip.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from omnimask.core.interfaces import EncodedSample, QuarantineError
from omnimask.modalities.video.decode import VIDEO_EXTS

CONTAINER_EXT = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "mkv", "avi": "avi"}
# Containers whose durations are header facts written by the muxer. Elsewhere FFmpeg estimates a duration
# from the file itself (MPEG-TS/PS, Ogg: the last timestamps, which a cut file moves along) or from its
# size and bitrate (a guess that would quarantine good variable-bitrate files).
HEADER_DURATION_FORMATS = ("matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", "avi", "flv", "asf")
# MPEG-TS packet sizes -> offset of the 0x47 sync byte in a packet (M2TS/Blu-ray prefixes a 4-byte timestamp).
TS_PACKET_SIZES = {188: 0, 192: 4, 204: 0}


@dataclass
class VideoIngestConfig:
    """Options of ``omnimask preprocess video``."""

    resize: int | None = None
    """Re-encode so that the short side is at most this many pixels (never upscales)."""
    reencode: bool = False
    """Re-encode every video (H.264 MP4), e.g. to shorten long keyframe intervals."""
    keyframe_interval: int = 16
    """Frames between keyframes of re-encoded videos."""
    crf: int = 23
    """H.264 constant rate factor of re-encoded videos (lower: better quality, larger files)."""
    min_frames: int = 2
    """Videos with fewer decodable frames are quarantined."""
    max_pixels: int = 4096 * 4096
    """Frames larger than this are quarantined before decoding."""
    truncation_tolerance: float = 0.05
    """Quarantine a video shorter than its header declares (frames or duration) by more than this share."""

    def __post_init__(self) -> None:
        if self.resize is not None and self.resize < 2:
            raise ValueError(f"resize must be >= 2, got {self.resize}")
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {self.keyframe_interval}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")
        if not 0 <= self.truncation_tolerance < 1:
            raise ValueError(f"truncation_tolerance must be in [0, 1), got {self.truncation_tolerance}")


def encode_video_file(path: Path, opts: VideoIngestConfig) -> EncodedSample:
    data = path.read_bytes()
    if not data:
        raise QuarantineError("empty file")
    info = probe(data, opts)
    meta = {k: info[k] for k in ("frames", "fps", "duration", "width", "height", "codec")}
    meta.update(orig_width=info["width"], orig_height=info["height"], orig_format=info["format"], orig_codec=info["codec"])
    shrink = opts.resize is not None and min(info["width"], info["height"]) > opts.resize
    seekable = info["format"] in CONTAINER_EXT  # MPEG-TS/PS, FLV, ... lack a seek index: re-encoded
    if not (shrink or opts.reencode or not seekable):
        return EncodedSample(ext=_ext(path, info["format"]), payload=data, meta=meta)
    width, height = info["width"], info["height"]
    if shrink:
        s = opts.resize / min(width, height)
        width, height = round(width * s), round(height * s)
    width, height = max(2, width - width % 2), max(2, height - height % 2)  # yuv420p needs even sides
    payload, frames = reencode(data, width, height, info["rate"], opts)
    meta.update(frames=frames, width=width, height=height, codec="h264")
    return EncodedSample(ext="mp4", payload=payload, meta=meta)


def _ext(path: Path, container_format: str) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in VIDEO_EXTS:
        return suffix
    return CONTAINER_EXT.get(container_format, "mkv")


def probe(data: bytes, opts: VideoIngestConfig) -> dict[str, Any]:
    """Open and decode every frame of the first video stream; the facts the loader needs.

    Quarantines what cannot be decoded and what is shorter than its header declares (truncated)."""
    try:
        container = av.open(io.BytesIO(data))
    except (av.FFmpegError, ValueError) as e:
        raise QuarantineError(f"not a decodable video container: {getattr(e, 'strerror', None) or e}") from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise QuarantineError(f"no video stream (the file has {', '.join(kinds)} streams only)")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # e.g. a cut MP4 whose sample descriptions are gone
            raise QuarantineError("the video stream names no codec that FFmpeg can decode")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > opts.max_pixels:
            raise QuarantineError(f"frames too large: {width}x{height} exceeds max_pixels={opts.max_pixels}")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise QuarantineError("the video stream has no frame rate")
        if container.format.name == "mpegts":
            check_ts_packets(data)
        decoded = decode_all(container, stream, frame_period=1 / float(rate))
        if decoded.frames < opts.min_frames:
            raise QuarantineError(f"only {decoded.frames} decodable frames (min_frames={opts.min_frames})")
        check_truncation(container, stream, decoded, opts.truncation_tolerance)
        return {
            "frames": decoded.frames,
            "rate": Fraction(rate),
            "fps": round(float(rate), 6),
            "duration": round(decoded.frames / float(rate), 6),
            "width": decoded.width,
            "height": decoded.height,
            "codec": stream.codec_context.name,
            "format": container.format.name,
        }


@dataclass
class Decoded:
    """What a full pass over a file found; times in seconds on the container's clock."""

    frames: int
    width: int
    height: int
    frame_period: float
    """One frame at the stream's average rate: the slack for last-frame durations a container leaves out."""
    video_end: float | None
    """End of the last decoded frame (presentation order; None without timestamps)."""
    data_end: float | None
    """End of the last packet of any stream (an audio track may outlast the video)."""
    damaged_tail: int | None
    """1-based index of a frame that came out of the final packet or the decoder's flush with errors:
    the stream stops inside that frame's data."""


def decode_all(container: av.container.InputContainer, stream: av.video.stream.VideoStream, *, frame_period: float) -> Decoded:
    """Demux every stream (their packet times give ``data_end``) and decode the video stream."""
    frames, width, height = 0, stream.codec_context.width, stream.codec_context.height
    video_end = data_end = None
    damaged_tail: int | None = None

    def take(out: Iterable[av.VideoFrame]) -> int | None:
        """Count the frames; the index of the last one decoded with errors."""
        nonlocal frames, width, height, video_end
        damaged = None
        for frame in out:
            frames += 1
            width, height = frame.width, frame.height
            damaged = frames if frame.is_corrupt else damaged
            # the stream's time base: frames out of a flush carry none (their ``time`` is NaN)
            time = None if frame.pts is None else float(frame.pts * stream.time_base)
            video_end = _later(video_end, _end(time, frame.duration, stream.time_base, frame_period))
        return damaged

    try:
        for packet in container.demux():
            if not packet.size:  # PyAV's end-of-stream packets; the decoder is flushed below
                continue
            is_video = packet.stream_index == stream.index
            stamp = packet.pts if packet.pts is not None else packet.dts
            time = None if stamp is None else float(stamp * packet.time_base)
            data_end = _later(data_end, _end(time, packet.duration, packet.time_base, frame_period if is_video else 0.0))
            if is_video:
                damaged_tail = take(stream.decode(packet))  # only the final packet's frames (and the flush's) count
        damaged_tail = take(stream.decode(None)) or damaged_tail
    except (av.FFmpegError, ValueError) as e:
        raise QuarantineError(f"corrupt video data after {frames} frames: {getattr(e, 'strerror', None) or e}") from None
    return Decoded(frames, width, height, frame_period, video_end, data_end, damaged_tail)


def _end(time: float | None, duration: int | None, time_base: Fraction | None, fallback: float) -> float | None:
    """``time`` + a packet's or frame's duration (``fallback`` where the container gives none, as FLV and TS)."""
    if time is None:
        return None
    return time + (float(duration * time_base) if duration and time_base else fallback)


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def check_ts_packets(data: bytes) -> None:
    """Quarantine an MPEG-TS that ends inside a transport packet: a whole stream is whole packets, and
    FFmpeg drops a partial last one silently (with it, a frame or more)."""
    for size, sync in TS_PACKET_SIZES.items():
        count = len(data) // size
        if count and all(data[sync + k * size] == 0x47 for k in range(min(count, 8))):
            if len(data) % size:
                raise QuarantineError(f"truncated: the file ends {len(data) % size} bytes into an MPEG-TS packet of {size}")
            return


def check_truncation(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, decoded: Decoded, tolerance: float
) -> None:
    """Quarantine a video shorter than its header says: fewer frames than the header lists (MP4, AVI), a
    shorter video stream or file than the durations declared (Matroska/WebM store no frame count), or
    a final frame whose data stops short (all that a cut MPEG-TS may show)."""
    promised = stream.frames
    if promised and decoded.frames < promised * (1 - tolerance):
        raise QuarantineError(f"truncated: decoded {decoded.frames} of the {promised} frames its header lists")
    if decoded.damaged_tail:
        raise QuarantineError(
            f"truncated: frame {decoded.damaged_tail} of {decoded.frames}, at the end of the stream, "
            "decodes with errors (its data stops short)"
        )
    if container.format.name not in HEADER_DURATION_FORMATS:
        return
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    _check_duration(
        "decoded",
        "its video stream",
        declared=video_duration(stream),
        start=start,
        reached=decoded.video_end,
        slack=decoded.frame_period,
        tolerance=tolerance,
    )
    declared = container.duration / 1e6 if container.duration else None
    start = container.start_time / 1e6 if container.start_time is not None else 0.0
    _check_duration(
        "its streams hold",
        "its container",
        declared=declared,
        start=start,
        reached=decoded.data_end,
        slack=decoded.frame_period,
        tolerance=tolerance,
    )


def video_duration(stream: av.video.stream.VideoStream) -> float | None:
    """Seconds the stream's header declares: its duration, or Matroska's per-track ``DURATION`` tag
    (``HH:MM:SS.nnnnnnnnn``, written by FFmpeg and mkvmerge; Matroska has no per-track duration field)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION", "")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _check_duration(
    verb: str, source: str, *, declared: float | None, start: float, reached: float | None, slack: float, tolerance: float
) -> None:
    """Quarantine when ``reached`` (an end time) falls short of the declared end by more than ``tolerance``
    of ``declared`` plus ``slack``. Matroska's duration counts from 0, other containers' from ``start``;
    the earlier of the two ends is taken, so a clip that starts late is never flagged for it."""
    if declared is None or declared <= 0 or reached is None:
        return
    end = min(declared, start + declared)
    if end - reached > tolerance * declared + slack:
        raise QuarantineError(f"truncated: {verb} {max(reached - start, 0):.2f} s of the {end - start:.2f} s {source} declares")


def reencode(data: bytes, width: int, height: int, rate: Fraction, opts: VideoIngestConfig) -> tuple[bytes, int]:
    """The video stream as H.264 MP4 (yuv420p, ``width x height``); returns the bytes and frame count."""
    buf = io.BytesIO()
    frames = 0
    with av.open(io.BytesIO(data)) as src, av.open(buf, mode="w", format="mp4") as dst:
        fps = rate.limit_denominator(100000)
        out = dst.add_stream("libx264", rate=fps)
        out.width, out.height, out.pix_fmt = width, height, "yuv420p"
        out.options = {"crf": str(opts.crf), "g": str(opts.keyframe_interval), "bf": "0", "preset": "veryfast"}
        out.codec_context.thread_count = 1
        for frame in src.decode(src.streams.video[0]):
            frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
            frame.pts, frame.time_base = frames, 1 / fps
            for packet in out.encode(frame):
                dst.mux(packet)
            frames += 1
        for packet in out.encode():
            dst.mux(packet)
    return buf.getvalue(), frames
