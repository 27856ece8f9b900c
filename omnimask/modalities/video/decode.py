"""Video decoding for the loader: seek, decode only the frames of one clip, crop and resize.

A clip is ``num_frames`` frames ``stride`` apart from a random start (VideoMAE:
16 frames, stride 4). The decoder seeks to the keyframe before the first
wanted frame and decodes forward until the last one, so a short clip out of a
long video costs a few GOPs, not the file. Only the wanted frames are
converted to RGB. All frames of a clip share one crop: VideoMAE's
``GroupMultiScaleCrop`` (crop sides from ``scales`` of the short side, at one of
13 fixed positions), resized bilinearly to the tokenizer's size by one call of
torch's uint8 kernel for the whole clip (Pillow's filter, to within rounding).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Optional

import av
import numpy as np
import torch

from omnimask.components.pixels import crop_resize
from omnimask.core.seeding import rng

VIDEO_EXTS = ("mp4", "webm", "mkv", "avi", "mov")


@dataclass
class VideoAugmentConfig:
    """``data.augment`` for video (VideoMAE pretraining defaults)."""

    stride: int = 4
    """Frames between two sampled frames (VideoMAE: 4 on Kinetics, 2 on Something-Something)."""
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    """Crop sides as shares of the frame's short side (GroupMultiScaleCrop)."""
    max_distort: int = 1
    """Largest index distance between the scales picked for crop width and height."""
    hflip: bool = False
    """Random horizontal flip (VideoMAE pretraining does not flip)."""

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if not self.scales or not all(0 < s <= 1 for s in self.scales):
            raise ValueError(f"scales must be in (0, 1], got {self.scales}")
        if self.max_distort < 0:
            raise ValueError(f"max_distort must be >= 0, got {self.max_distort}")


def frame_indices(num_frames: int, count: int, stride: int, g: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` frames ``stride`` apart from a random start (uniform over every start
    that fits). A video too short for the span starts at 0 and repeats its last reachable
    frame, as VideoMAE's loader does."""
    span = (count - 1) * stride + 1
    if num_frames >= span:
        start = int(g.integers(0, num_frames - span + 1))
        return start + stride * np.arange(count)
    last = (num_frames - 1) // stride * stride
    return np.minimum(stride * np.arange(count), last)


def multi_scale_crop_box(
    width: int, height: int, size: int, scales: tuple[float, ...], max_distort: int, g: np.random.Generator
) -> tuple[int, int, int, int]:
    """``(left, top, crop_w, crop_h)`` as VideoMAE's ``GroupMultiScaleCrop(size, scales)`` picks them
    (``fix_crop`` and ``more_fix_crop``: 13 fixed positions)."""
    base = min(width, height)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    cw, ch = pairs[int(g.integers(len(pairs)))]
    cw, ch = min(cw, width), min(ch, height)
    ws, hs = (width - cw) // 4, (height - ch) // 4
    offsets = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    ox, oy = offsets[int(g.integers(len(offsets)))]
    return ox * ws, oy * hs, cw, ch


def payload(members: dict[str, bytes]) -> bytes:
    for ext in VIDEO_EXTS:
        if ext in members:
            return members[ext]
    raise ValueError(f"sample has no video member ({'/'.join(VIDEO_EXTS)}); members: {sorted(members)}")


def decode_frames(
    data: bytes, indices: np.ndarray, fps: Fraction | float, stats: Optional[dict[str, int]] = None, seek: bool = True
) -> list[av.VideoFrame]:
    """The frames at ``indices`` (ascending, repeats allowed) of the first video stream.

    Seeks to the keyframe at or before the first wanted frame, then decodes
    forward; a frame's index is its presentation time x ``fps``. When the seek
    cannot be trusted (no timestamps, or it landed after the first wanted frame,
    as in containers without a seek index) the stream is decoded from the start
    instead. Frames missing at the end (a stream shorter than its metadata)
    repeat the last decoded one. ``stats["decoded"]`` receives the number of
    frames decoded.
    """
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        # One loader worker per core already: a decoder thread pool per clip (FFmpeg's default, a thread
        # per core) only adds start-up and contention between the workers.
        stream.codec_context.thread_count = 1
        start_time = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        seeked = seek and int(indices[0]) > 0 and stream.time_base is not None
        if seeked:
            target = start_time + int(indices[0]) / float(fps)
            container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        out: list[av.VideoFrame] = []
        last = None
        counter = 0
        for frame in container.decode(stream):
            position = counter if frame.time is None else round((frame.time - start_time) * float(fps))
            if seeked and counter == 0 and (frame.time is None or position > indices[0]):
                break  # cannot tell where the seek landed, or it overshot: decode from the start
            counter += 1
            while len(out) < len(indices) and position >= indices[len(out)]:
                out.append(frame)
            last = frame
            if len(out) == len(indices):
                break
        if seeked and last is None:
            return decode_frames(data, indices, fps, stats, seek=False)
        if last is None:
            raise ValueError("the video stream has no decodable frame")
        out += [out[-1] if out else last] * (len(indices) - len(out))
        if stats is not None:
            stats["decoded"] = counter
        return out


class VideoDecoder:
    """``(members, seed) -> uint8 [T, S, S, 3]``: sample frame indices, seek, decode, crop, resize."""

    def __init__(self, augment: VideoAugmentConfig, num_frames: int, size: int):
        self.aug, self.num_frames, self.size = augment, num_frames, size

    def __call__(self, members: dict[str, bytes], seed: int) -> np.ndarray:
        return self.views(members, [seed])[0]

    def views(self, members: dict[str, bytes], seeds: list[int]) -> list[np.ndarray]:
        """One clip ``[T, S, S, 3]`` per seed (``data.repeats``), all from the frames of the first seed's time
        window, decoded and converted to RGB once; each seed draws its own crop and flip."""
        meta: dict[str, Any] = json.loads(members.get("json", b"{}"))
        if not meta.get("frames") or not meta.get("fps"):
            raise ValueError("sample metadata lacks frames/fps (was it written by `omnimask preprocess video`?)")
        draws = [rng(seed, "video_augment") for seed in seeds]
        # every view draws a window, as a decode of its seed alone would, so its crop and flip are those draws;
        # only the first view's window is decoded
        windows = [frame_indices(int(meta["frames"]), self.num_frames, self.aug.stride, g) for g in draws]
        frames = decode_frames(payload(members), windows[0], Fraction(meta["fps"]).limit_denominator(100000))
        distinct = {id(f): f for f in frames}  # a short video repeats its last frame: convert it once
        rgb = torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in distinct.values()]))  # [U, H, W, 3]
        row = {key: i for i, key in enumerate(distinct)}
        order = None if len(distinct) == len(frames) else [row[id(f)] for f in frames]
        clips = []
        for g in draws:
            box = multi_scale_crop_box(frames[0].width, frames[0].height, self.size, self.aug.scales, self.aug.max_distort, g)
            flip = self.aug.hflip and g.random() < 0.5
            clip = crop_resize(rgb.permute(0, 3, 1, 2), box, self.size, "bilinear", flip)
            clips.append(clip if order is None else clip[order])
        return clips
