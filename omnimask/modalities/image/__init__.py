"""Image modality: MAE (random masking) and BEiT-style block masking."""

from __future__ import annotations

from pathlib import Path

from omnimask.core.interfaces import Modality, Tokenizer
from omnimask.core.registry import register
from omnimask.modalities.image.decode import ImageAugmentConfig, ImageDecoder
from omnimask.modalities.image.ingest import ImageIngestConfig, encode_image_file
from omnimask.modalities.image.tokenizer import ImagePatchTokenizer


@register("modality", "image")
class ImageModality(Modality):
    """Photographs and other pictures (JPEG, PNG, WebP, ...): MAE and block masking."""

    name = "image"
    IngestConfig = ImageIngestConfig
    AugmentConfig = ImageAugmentConfig

    tokenizer_types = (ImagePatchTokenizer,)
    encode_file = staticmethod(encode_image_file)

    def decoder(self, augment: ImageAugmentConfig, tokenizer: Tokenizer) -> ImageDecoder:
        return ImageDecoder(augment, tokenizer.image_size)

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        from omnimask.modalities.image.examples import build_demo_images

        return build_demo_images(out, count, seed=seed)
