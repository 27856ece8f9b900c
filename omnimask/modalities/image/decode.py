"""Image decoding with the MAE augmentation: RandomResizedCrop + horizontal flip.

The crop is chosen on the header's size before decoding. Then one of two paths:

- an RGB JPEG whose crop is under twice the output size (ImageNet-sized pictures at 224 px, almost every
  sample) is decoded by libjpeg-turbo through ``torchvision.io.decode_jpeg`` and cropped and resized by
  torch's vectorised uint8 antialiased resize (the filters Pillow uses, to within rounding): the main reason
  the image loader outruns torchvision's ImageFolder (``python -m benchmarks.loader_image`` compares them);
- a JPEG whose crop is at least twice the output size is decoded at reduced scale (libjpeg DCT scaling
  through Pillow's ``draft``), and everything else (PNG, greyscale or CMYK JPEGs, Lanczos or nearest
  resampling) through Pillow, the crop and resize in one ``Image.resize(box=...)`` call.

torchvision is imported by the decoder, not with this module: importing it is slow (it pulls in
``torch._dynamo``), which every process that registers the modalities would pay, preprocessing workers
and CLI commands included, though only a loader decoding JPEGs uses it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from omnimask.components.pixels import crop_resize
from omnimask.core.seeding import rng

MAX_DECODE_PIXELS = 178_956_970  # Pillow's own bomb limit (2 x MAX_IMAGE_PIXELS)


@dataclass
class ImageAugmentConfig:
    """``data.augment`` for images (MAE defaults)."""

    scale: tuple[float, float] = (0.2, 1.0)
    """Crop area as a share of the image area."""
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """Crop aspect ratio range (log-uniform)."""
    hflip: bool = True
    """Random horizontal flip (MAE pretraining flips)."""
    interpolation: str = "bicubic"
    """Resampling filter of the crop's resize: ``bicubic`` (MAE), ``bilinear``, ``nearest`` or ``lanczos``."""

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

    TORCH_MODES = {"bicubic": "bicubic", "bilinear": "bilinear"}
    """Interpolations torch resizes uint8 images with, antialiased as Pillow does."""

    def __init__(self, augment: ImageAugmentConfig, size: int):
        self.aug = augment
        self.size = size
        self.resample = _RESAMPLE[augment.interpolation]
        self.torch_mode = self.TORCH_MODES.get(augment.interpolation)
        self.decode_jpeg = None
        if self.torch_mode:  # imported here, before loader workers fork, not in each worker
            from torchvision.io import decode_jpeg

            self.decode_jpeg = decode_jpeg

    def __call__(self, members: dict[str, bytes], seed: int) -> np.ndarray:
        data = members.get("jpg") or members.get("png")
        if data is None:
            raise ValueError(f"sample has no jpg/png member (members: {sorted(members)})")
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_DECODE_PIXELS:
            raise ValueError(f"image of {w}x{h} pixels exceeds the decode limit")
        g = rng(seed, "image_augment")
        box = random_resized_crop_box(w, h, self.aug.scale, self.aug.ratio, g)
        flip = self.aug.hflip and g.random() < 0.5
        jpeg = img.format == "JPEG"
        reduce = self.dct_reduction(*box[2:]) if jpeg else 1
        if jpeg and reduce == 1 and img.mode == "RGB" and self.decode_jpeg is not None:
            image = self.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))  # [3, H, W]
            return crop_resize(image[None], box, self.size, self.torch_mode, flip)[0]
        return self.crop_resize_pillow(img, box, flip, reduce)

    def dct_reduction(self, cw: int, ch: int) -> int:
        """The largest power-of-two JPEG scale (up to 1/8) that still leaves the crop at least the output size."""
        reduce = 1
        while reduce < 8 and min(cw, ch) >= 2 * reduce * self.size:
            reduce *= 2
        return reduce

    def crop_resize_pillow(self, img: Image.Image, box: tuple[int, int, int, int], flip: bool, reduce: int) -> np.ndarray:
        left, top, cw, ch = box
        if reduce > 1:
            w, h = img.size
            img.draft("RGB", (math.ceil(w / reduce), math.ceil(h / reduce)))
            sx, sy = img.size[0] / w, img.size[1] / h
            left, top, cw, ch = left * sx, top * sy, cw * sx, ch * sy  # type: ignore[assignment]  # the box in the reduced image, in float pixels as Pillow takes them
        if img.mode != "RGB":
            img = img.convert("RGB")
        out = img.resize((self.size, self.size), self.resample, box=(left, top, left + cw, top + ch))
        if flip:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return np.array(out)  # a writable copy (np.asarray of a PIL image is read-only)
