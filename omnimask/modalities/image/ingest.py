"""Image ingest: decode and validate one file, optionally downscale, encode for a shard."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from omnimask.core.interfaces import EncodedSample, QuarantineError

FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "jpg"}  # MPO: multi-picture JPEGs of cameras


@dataclass
class ImageIngestConfig:
    """Options of ``omnimask preprocess image``."""

    resize: Optional[int] = None
    """Downscale so that the short side is at most this many pixels (never upscales)."""
    max_pixels: int = 64_000_000
    """Larger images are quarantined before decoding (decompression-bomb guard)."""
    min_side: int = 8
    """Images with a side shorter than this are quarantined."""
    jpeg_quality: int = 95
    """Quality of re-encoded JPEGs (resized, rotated, CMYK or WebP inputs)."""

    def __post_init__(self) -> None:
        if self.resize is not None and self.resize < 1:
            raise ValueError(f"resize must be >= 1, got {self.resize}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")


def check_jpeg(data: bytes) -> None:
    """Decode a JPEG stored as it is with libjpeg-turbo through torchvision, as the loader does, which refuses
    the damage Pillow decodes past with a warning (entropy data cut short, bytes before a marker): an image the
    loader could not read is quarantined here, not kept. (A JPEG that is re-encoded, resized or turned upright,
    is stored as Pillow decodes it.)"""
    from torchvision.io import decode_jpeg

    try:
        decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    except RuntimeError as e:
        raise QuarantineError(f"corrupt JPEG data: {str(e).rsplit(', ', 1)[-1]}") from None


def passes_through(img: Image.Image, opts: ImageIngestConfig) -> bool:
    """Whether ``img`` (opened, not decoded) is stored as it is: upright, RGB or grey, not to be resized."""
    return img.getexif().get(0x0112, 1) == 1 and img.mode in ("RGB", "L") and (opts.resize is None or min(img.size) <= opts.resize)


def encode_image_file(path: Path, opts: ImageIngestConfig) -> EncodedSample:
    """Validate ``path`` by decoding it fully; pass the original bytes through when
    nothing needs changing, else re-encode (JPEG for photos, PNG for PNG sources)."""
    data = path.read_bytes()
    if not data:
        raise QuarantineError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            width, height = img.size
            if fmt not in FORMATS:
                raise QuarantineError(f"unsupported image format {fmt}")
            if width * height > opts.max_pixels:
                raise QuarantineError(f"image too large: {width}x{height} exceeds max_pixels={opts.max_pixels}")
            if min(width, height) < opts.min_side:
                raise QuarantineError(f"image too small: {width}x{height} (min_side={opts.min_side})")
            if fmt == "JPEG" and passes_through(img, opts):
                check_jpeg(data)  # these bytes are what the loader decodes: decoded here as it will, once
            else:
                img.load()  # re-encoded below from Pillow's decoding
    except QuarantineError:
        raise
    except UnidentifiedImageError:
        raise QuarantineError("not a decodable image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise QuarantineError(f"decompression bomb: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise QuarantineError(f"corrupt or truncated image data: {e}") from None

    changed = False
    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: apply it once, here
        img = ImageOps.exif_transpose(img)
        changed = True
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
        changed = True
    if opts.resize is not None and min(img.size) > opts.resize:
        s = opts.resize / min(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BICUBIC, reducing_gap=3.0)
        changed = True
    ext = FORMATS[fmt]
    if changed or fmt in ("WEBP", "MPO"):  # MPO keeps its first picture
        buf = io.BytesIO()
        if ext == "jpg":
            img.save(buf, format="JPEG", quality=opts.jpeg_quality)
        else:
            img.save(buf, format="PNG")
        data = buf.getvalue()
    meta = {"width": img.width, "height": img.height, "orig_width": width, "orig_height": height, "orig_format": fmt}
    return EncodedSample(ext=ext, payload=data, meta=meta)
