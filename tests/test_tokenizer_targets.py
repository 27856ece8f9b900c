import numpy as np
import pytest
import torch

from omnimask.components.maskers import RandomMasker
from omnimask.components.targets import NormPixelTarget, PixelTarget
from omnimask.core.interfaces import TokenLayout
from omnimask.modalities.image.tokenizer import IMAGENET_MEAN, IMAGENET_STD, ImagePatchTokenizer, patchify, unpatchify


def mae_patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """MAE's reference patchify on [N, 3, H, W] (einsum nchpwq->nhwpqc)."""
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def test_patchify_matches_mae_layout_and_round_trips():
    imgs = torch.randint(0, 256, (2, 64, 48, 3), dtype=torch.uint8)
    tokens = patchify(imgs, 16)
    assert tokens.shape == (2, 12, 768)
    assert torch.equal(tokens, mae_patchify(imgs.permute(0, 3, 1, 2), 16))
    assert torch.equal(unpatchify(tokens, (4, 3), 16), imgs)


def test_image_tokenizer_layout_prepare_restore():
    tok = ImagePatchTokenizer(ImagePatchTokenizer.Config(image_size=32, patch_size=8))
    assert tok.layout == TokenLayout(grid=(4, 4), token_dim=192)
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tokens = tok(img)
    assert tokens.dtype == torch.uint8 and tokens.shape == (16, 192)
    prepared = tok.prepare(tokens)
    # value d of a token is channel d % 3: (x/255 - mean_c) / std_c
    c = 1
    expected = (tokens[:, c::3].float() / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    assert torch.allclose(prepared[:, c::3], expected, atol=1e-5)
    assert torch.allclose(tok.restore(prepared), tokens.float(), atol=1e-3)
    back = tok.detokenize(tokens[None])
    assert back.shape == (1, 3, 32, 32)
    assert torch.allclose(back[0].permute(1, 2, 0) * 255, torch.from_numpy(img).float(), atol=1e-3)


def test_tokenizer_rejects_wrong_input():
    tok = ImagePatchTokenizer(ImagePatchTokenizer.Config(image_size=32, patch_size=8))
    with pytest.raises(ValueError, match=r"expected uint8 \[32, 32, 3\], got uint8 \[16, 16, 3\]"):
        tok(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ImagePatchTokenizer.Config(image_size=30, patch_size=8)


def test_norm_pixel_target_is_per_patch_normalised_prepared_pixels():
    tok = ImagePatchTokenizer(ImagePatchTokenizer.Config(image_size=32, patch_size=8))
    tokens = tok(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = torch.as_tensor(RandomMasker(RandomMasker.Config(ratio=0.75))(tok.layout, 3))
    norm = NormPixelTarget(NormPixelTarget.Config(), tok)
    compact = norm(tokens, mask)
    assert compact.dtype == torch.uint8 and compact.shape == (12, 192)  # stays compact in the loader
    target = norm.finalize(compact[None])[0]
    assert target.shape == (12, 192) and target.dtype == torch.float32
    # rows follow the hidden positions in ascending order
    hidden = tok.prepare(tokens)[mask.nonzero().squeeze(1)]
    mean, var = hidden.mean(-1, keepdim=True), hidden.var(-1, keepdim=True)  # unbiased, as MAE's Tensor.var call
    assert torch.allclose(target, (hidden - mean) / (var + 1e-6) ** 0.5, atol=1e-5)
    assert torch.allclose(target.mean(-1), torch.zeros(12), atol=1e-5)
    assert torch.allclose(target.var(-1), torch.ones(12), atol=1e-3)


def test_pixel_target_and_to_tokens_inverse():
    tok = ImagePatchTokenizer(ImagePatchTokenizer.Config(image_size=32, patch_size=8))
    tokens = tok(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = torch.as_tensor(RandomMasker(RandomMasker.Config(ratio=0.5))(tok.layout, 0))
    for target in (PixelTarget(tok), NormPixelTarget(NormPixelTarget.Config(), tok)):
        t = target.finalize(target(tokens, mask)[None])
        assert t.shape == (1, 8, target.dim)
        back = target.to_tokens(t, tokens[mask][None].float())
        assert torch.allclose(back[0], tokens[mask].float(), atol=1e-2)
    assert torch.allclose(PixelTarget(tok).finalize(tokens[mask]), tok.prepare(tokens)[mask])
