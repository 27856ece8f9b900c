"""Modalities: ingest, decoding, tokenizers, maskers and targets, one sub-package each.

Shared pieces that fit any token layout live here: ``maskers.py`` (random),
``targets.py`` (pixels, norm_pixels, channel_norm_pixels) and ``pixels.py`` (what
the image and video tokenizers share). Importing this package registers them all.
"""

from omnimask.modalities import maskers, targets  # noqa: F401
from omnimask.modalities import audio, graph, image, pointcloud, protein, video  # noqa: F401
