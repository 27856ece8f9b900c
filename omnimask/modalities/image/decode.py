"""Image decoding with the MAE augmentation: RandomResizedCrop + horizontal flip.

The crop is chosen on the header's size before decoding, so a JPEG whose crop
is at least twice the output size is decoded at reduced scale (libjpeg DCT
scaling through Pillow's ``draft``), and the crop and resize are one
``Image.resize(box=...)`` call.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from omnimask.seeding import rng

MAX_DECODE_PIXELS = 178_956_970  # Pillow's own bomb limit (2 x MAX_IMAGE_PIXELS)


@dataclass
class ImageAugmentConfig:
    """``data.augment`` for images (MAE defaults)."""

    scale: tuple[float, float] = (0.2, 1.0)
    """Crop area as a share of the image area."""
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """Crop aspect ratio range (log-uniform)."""
    hflip: bool = True
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")


_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}


def random_resized_crop_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float], g: np.random.Generator
) -> tuple[int, int, int, int]:
    """``(left, top, crop_w, crop_h)`` as torchvision's RandomResizedCrop picks them."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * g.uniform(*scale)
        aspect = math.exp(g.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= width and 0 < ch <= height:
            return int(g.integers(0, width - cw + 1)), int(g.integers(0, height - ch + 1)), cw, ch
    return center_crop_box(width, height, ratio)


def center_crop_box(width: int, height: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """The largest centred crop with aspect ratio inside ``ratio`` (RandomResizedCrop's fallback)."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        cw, ch = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        cw, ch = int(round(height * ratio[1])), height
    else:
        cw, ch = width, height
    return (width - cw) // 2, (height - ch) // 2, cw, ch


class ImageDecoder:
    """``(members, seed) -> uint8 [size, size, 3]``: decode, random-resized-crop, flip."""

    def __init__(self, augment: ImageAugmentConfig, size: int):
        self.aug = augment
        self.size = size
        self.resample = _RESAMPLE[augment.interpolation]

    def __call__(self, members: dict[str, bytes], seed: int) -> np.ndarray:
        data = members.get("jpg") or members.get("png")
        if data is None:
            raise ValueError(f"sample has no jpg/png member (members: {sorted(members)})")
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_DECODE_PIXELS:
            raise ValueError(f"image of {w}x{h} pixels exceeds the decode limit")
        g = rng(seed, "image_augment")
        left, top, cw, ch = random_resized_crop_box(w, h, self.aug.scale, self.aug.ratio, g)
        if img.format == "JPEG":
            reduce = 1
            while reduce < 8 and min(cw, ch) >= 2 * reduce * self.size:
                reduce *= 2
            if reduce > 1:
                img.draft("RGB", (math.ceil(w / reduce), math.ceil(h / reduce)))
                sx, sy = img.size[0] / w, img.size[1] / h
                left, top, cw, ch = left * sx, top * sy, cw * sx, ch * sy
        if img.mode != "RGB":
            img = img.convert("RGB")
        out = img.resize((self.size, self.size), self.resample, box=(left, top, left + cw, top + ch))
        if self.aug.hflip and g.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return np.array(out)  # a writable copy (np.asarray of a PIL image is read-only)
