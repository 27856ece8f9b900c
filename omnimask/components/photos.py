"""The photographs scikit-image ships, as RGB arrays: the content of the image and video example inputs
(no network)."""

from __future__ import annotations

import numpy as np

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "moon",
    "brick",
    "grass",
    "gravel",
    "coins",
)


def load_photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled sample photographs as RGB uint8 arrays."""
    import skimage.data

    photos = {}
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos[name] = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    return photos
