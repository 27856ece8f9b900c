"""The image decoder's paths: libjpeg-turbo + torch resize, DCT-scaled Pillow, plain Pillow; same crops and flips."""

import io

import numpy as np
import pytest
from PIL import Image

from omnimask.core.seeding import rng
from omnimask.modalities.image import decode as image_decode
from omnimask.modalities.image.decode import ImageAugmentConfig, ImageDecoder, random_resized_crop_box


def photo(width: int, height: int, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    """A smooth picture with some texture (gradients plus a seeded pattern), encoded."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).integers(0, 40, (height, width, 1))
    arr = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1) + noise
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def reference(data: bytes, seed: int, aug: ImageAugmentConfig, size: int) -> np.ndarray:
    """torchvision's RandomResizedCrop on a PIL image: crop, then resize (bicubic), then the flip."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    g = rng(seed, "image_augment")
    left, top, cw, ch = random_resized_crop_box(*img.size, aug.scale, aug.ratio, g)
    out = img.crop((left, top, left + cw, top + ch)).resize((size, size), Image.BICUBIC)
    if aug.hflip and g.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(out).astype(int)


def test_rgb_jpegs_take_the_torch_path_and_match_pillows_crop_and_resize(monkeypatch):
    data, aug = photo(450, 365), ImageAugmentConfig()
    decoder = ImageDecoder(aug, 224)
    calls = []
    original = image_decode.crop_resize
    monkeypatch.setattr(image_decode, "crop_resize", lambda *a: calls.append(1) or original(*a))
    for seed in range(8):
        out = decoder({"jpg": data}, seed)
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8 and out.flags.writeable
        diff = np.abs(out.astype(int) - reference(data, seed, aug, 224))
        assert diff.mean() < 0.5 and diff.max() <= 8, (seed, diff.mean(), diff.max())
        assert np.array_equal(out, decoder({"jpg": data}, seed))
    assert len(calls) == 16


def test_the_flip_is_drawn_per_sample_and_mirrors_the_crop():
    data = photo(450, 365)
    flipping, plain = ImageDecoder(ImageAugmentConfig(hflip=True), 64), ImageDecoder(ImageAugmentConfig(hflip=False), 64)
    flipped = []
    for seed in range(12):
        a, b = flipping({"jpg": data}, seed), plain({"jpg": data}, seed)
        assert np.array_equal(a, b) or np.array_equal(a, b[:, ::-1])
        flipped.append(not np.array_equal(a, b))
    assert 0 < sum(flipped) < len(flipped)


def test_a_crop_twice_the_output_is_decoded_at_reduced_scale(monkeypatch):
    data, aug = photo(1600, 1200), ImageAugmentConfig(scale=(0.9, 1.0))
    decoder = ImageDecoder(aug, 224)
    reductions = []
    original = decoder.crop_resize_pillow
    monkeypatch.setattr(
        decoder, "crop_resize_pillow", lambda img, box, flip, reduce: reductions.append(reduce) or original(img, box, flip, reduce)
    )
    out = decoder({"jpg": data}, 3)
    assert reductions and reductions[0] >= 2
    diff = np.abs(out.astype(int) - reference(data, 3, aug, 224))
    assert diff.mean() < 3, diff.mean()


@pytest.mark.parametrize("mode, fmt, key", [("L", "JPEG", "jpg"), ("RGB", "PNG", "png"), ("RGBA", "PNG", "png")])
def test_other_images_go_through_pillow_as_rgb(mode, fmt, key):
    data, aug = photo(300, 240, mode, fmt), ImageAugmentConfig()
    out = ImageDecoder(aug, 96)({key: data}, 5)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - reference(data, 5, aug, 96)).mean() < 3


def test_a_truncated_jpeg_is_an_error_not_a_grey_picture():
    data = photo(450, 365)
    with pytest.raises(RuntimeError):
        ImageDecoder(ImageAugmentConfig(), 224)({"jpg": data[: len(data) // 2]}, 0)


def test_torchvision_is_imported_by_the_jpeg_decoder_not_by_registering_the_modalities():
    """Importing torchvision costs ~1.7 s (it imports torch._dynamo): preprocessing workers and CLI commands,
    which register every modality, must not pay it; a decoder that uses libjpeg-turbo imports it."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom omnimask.core import registry\nfrom omnimask.data import preprocess\n"
        "from omnimask.cli import main as cli\n"
        "for name in ('image', 'video', 'audio', 'pointcloud', 'graph', 'protein'): registry.lookup('modality', name)\n"
        "print('torchvision' in sys.modules)\n"
        "from omnimask.modalities.image.decode import ImageAugmentConfig, ImageDecoder\n"
        "ImageDecoder(ImageAugmentConfig(), 32)\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
