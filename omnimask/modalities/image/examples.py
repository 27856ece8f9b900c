"""Demo and test images: random crops of the photographs scikit-image ships (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from omnimask.components.photos import load_photos


def build_demo_images(out: Path, num_crops: int, seed: int = 0) -> int:
    """Write ``num_crops`` random crops (JPEG, every fifth PNG) plus three broken files; returns files written."""
    g = np.random.default_rng(seed)
    photos = load_photos()
    names = sorted(photos)
    for i in range(num_crops):
        name = names[i % len(names)]
        img = photos[name]
        h, w = img.shape[:2]
        side = int(g.integers(min(96, h, w), min(h, w) + 1))
        top, left = int(g.integers(0, h - side + 1)), int(g.integers(0, w - side + 1))
        crop = Image.fromarray(img[top : top + side, left : left + side]).resize((128, 128), Image.BICUBIC)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        if i % 5 == 4:
            crop.save(folder / f"crop{i:04d}.png")
        else:
            crop.save(folder / f"crop{i:04d}.jpg", quality=90)
    broken = out / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    good = (out / names[0] / "crop0000.jpg").read_bytes()
    (broken / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (broken / "empty.png").write_bytes(b"")
    (broken / "notes.txt").write_text("not an image\n")
    return num_crops + 3
