"""Video ingest: validate a file by decoding every frame, record its metadata, keep it encoded.

The clip stays encoded in the shard (decoding happens on the fly in the
loader). The original bytes pass through unless ``resize`` asks for a smaller
short side, ``reencode`` is set, or the container has no seek index (MPEG-TS,
MPEG-PS, FLV, ...); then the video stream is re-encoded to
H.264 MP4 with a keyframe every ``keyframe_interval`` frames, so that the
loader's seeks land close to the frames it wants. Audio streams are dropped
in a re-encode.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import av

from omnimask.modalities.base import EncodedSample, QuarantineError
from omnimask.modalities.video.decode import VIDEO_EXTS

CONTAINER_EXT = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "mkv", "avi": "avi"}


@dataclass
class VideoIngestConfig:
    """Options of ``omnimask preprocess video``."""

    resize: Optional[int] = None
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
    """Quarantine a video that decodes to fewer frames than its header promises, by more than this share."""

    def __post_init__(self) -> None:
        if self.resize is not None and self.resize < 2:
            raise ValueError(f"resize must be >= 2, got {self.resize}")
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {self.keyframe_interval}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")


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
        s = opts.resize / min(width, height)  # type: ignore[operator]
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
    """Open and decode every frame of the first video stream; the facts the loader needs."""
    try:
        container = av.open(io.BytesIO(data))
    except (av.FFmpegError, ValueError) as e:
        raise QuarantineError(f"not a decodable video container: {getattr(e, 'strerror', None) or e}") from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise QuarantineError(f"no video stream (the file has {', '.join(kinds)} streams only)")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > opts.max_pixels:
            raise QuarantineError(f"frames too large: {width}x{height} exceeds max_pixels={opts.max_pixels}")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise QuarantineError("the video stream has no frame rate")
        promised = stream.frames
        frames = 0
        try:
            for frame in container.decode(stream):
                frames += 1
                width, height = frame.width, frame.height
        except (av.FFmpegError, ValueError) as e:
            raise QuarantineError(f"corrupt video data after {frames} frames: {getattr(e, 'strerror', None) or e}") from None
        if frames < opts.min_frames:
            raise QuarantineError(f"only {frames} decodable frames (min_frames={opts.min_frames})")
        if promised and frames < promised * (1 - opts.truncation_tolerance):
            raise QuarantineError(f"truncated: decoded {frames} of the {promised} frames its header lists")
        return {
            "frames": frames,
            "rate": Fraction(rate),
            "fps": round(float(rate), 6),
            "duration": round(frames / float(rate), 6),
            "width": width,
            "height": height,
            "codec": stream.codec_context.name,
            "format": container.format.name,
        }


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
