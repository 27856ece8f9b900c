"""Demo and test videos: real encoded files with moving content, written with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from omnimask.components.photos import load_photos

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".ts": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}


def write_video(
    path: Path, frames: np.ndarray, fps: int | Fraction = 24, codec: str | None = None, gop: int = 12, reproducible: bool = True
) -> None:
    """Encode uint8 frames ``[T, H, W, 3]`` (even H and W) into ``path``; the codec follows the extension.

    ``reproducible``: encode H.264 without x264's assembly code. With the assembly, the same frames gave
    one of two or three files depending on where their array lived (it seems to read uninitialised
    memory). Without it, encoding is several times slower, which the demo's small clips hardly notice;
    the benchmarks' large clips turn it off.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec or CODECS[path.suffix.lower()], rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        no_asm = reproducible and stream.codec_context.name == "libx264"
        stream.options = {"g": str(gop), **({"x264-params": "asm=0"} if no_asm else {})}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_clip(photo: np.ndarray, num_frames: int, size: int, g: np.random.Generator) -> np.ndarray:
    """A camera pan (with a slow zoom) over ``photo`` and a disc crossing it: uint8 ``[T, size, size, 3]``."""
    h, w = photo.shape[:2]
    side0 = int(g.integers(min(h, w) // 3, min(h, w) // 2 + 1))
    zoom = g.uniform(0.9, 1.1)
    x0, y0 = g.uniform(0, w - side0 * 1.2), g.uniform(0, h - side0 * 1.2)
    vx, vy = g.uniform(-3, 3, 2) * side0 / 64
    disc_color = g.integers(0, 256, 3)
    dx, dy = g.uniform(0, size), g.uniform(0, size)
    dvx, dvy = g.uniform(-2, 2, 2)
    radius = size / 8
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    img = Image.fromarray(photo)
    for t in range(num_frames):
        side = side0 * zoom**t if zoom**t * side0 < min(h, w) else min(h, w)
        x = float(np.clip(x0 + vx * t, 0, w - side))
        y = float(np.clip(y0 + vy * t, 0, h - side))
        frame = np.asarray(img.resize((size, size), Image.BILINEAR, box=(x, y, x + side, y + side))).copy()
        cx, cy = (dx + dvx * t) % size, (dy + dvy * t) % size
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2] = disc_color
        frames[t] = frame
    return frames


def build_demo_videos(out: Path, num_clips: int, num_frames: int = 40, size: int = 64, seed: int = 0) -> int:
    """``num_clips`` short clips of pans over scikit-image's photos (MP4/H.264, every fourth WebM/VP9,
    every seventh AVI/MPEG-4), plus three broken files; returns files written."""
    g = np.random.default_rng(seed)
    photos = load_photos()
    names = sorted(photos)
    for i in range(num_clips):
        name = names[i % len(names)]
        ext = ".avi" if i % 7 == 6 else ".webm" if i % 4 == 3 else ".mp4"
        write_video(out / name / f"clip{i:04d}{ext}", moving_clip(photos[name], num_frames, size, g), fps=20)
    broken = out / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    good = next((out / names[0]).glob("*.mp4")).read_bytes()
    (broken / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (broken / "empty.mp4").write_bytes(b"")
    (broken / "noise.mkv").write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return num_clips + 3
