"""MAE and AudioMAE as their reference code computes them: the baseline of the ``mae_image*`` and ``audiomae*``
recipes (fidelity tests and the training-step benchmark).

Written from the reference repositories' code, with their parameter names, shapes and order of operations
(not copied); each piece follows:

- ``Mlp``, ``Attention`` (:mod:`benchmarks.reference_timm`), :class:`Block`: timm 0.3.2 ``timm/models/vision_transformer.py`` (``Mlp``,
  ``Attention``, ``Block``), the version both repositories pin (``assert timm.__version__ == "0.3.2"``) and
  build with ``qkv_bias=True, qk_scale=None`` and ``norm_layer=partial(nn.LayerNorm, eps=1e-6)``
  (``mae_vit_*_dec512d8b``): q, k, v from one Linear laid out ``[3, heads, head_dim]``, the attention matrix
  materialised, no dropout (rates 0) and no stochastic depth (``drop_path`` 0: ``nn.Identity``).
- :class:`PatchEmbed`: timm 0.3.2 ``PatchEmbed`` (MAE) and AudioMAE ``util/patch_embed.py`` ``PatchEmbed_org``:
  a Conv2d with kernel and stride ``p``, output flattened in raster order; ``patch_hw`` as AudioMAE sets it,
  ``(img_size[1] // p, img_size[0] // p)``.
- :func:`get_1d_sincos_pos_embed_from_grid`, :func:`get_2d_sincos_pos_embed_from_grid`,
  :func:`get_2d_sincos_pos_embed_flexible`: ``util/pos_embed.py`` of both repositories (MAE's
  ``get_2d_sincos_pos_embed`` is the flexible one over a square grid).
- :class:`MaskedAutoencoderViT`: ``models_mae.py`` ``MaskedAutoencoderViT`` of MAE (``initialize_weights``,
  ``patchify``, ``unpatchify``, ``random_masking``, ``forward_encoder``, ``forward_decoder``, ``forward_loss``)
  with AudioMAE's ``audio_exp`` path (``in_chans=1``, ``img_size=(target_length, 128)``, the flexible table over
  ``patch_hw``, ``patchify`` for one channel, ``decoder_mode=0``: global-attention decoder blocks, the cls row
  dropped after ``decoder_pred``, ``mask_2d=False``: ``random_masking``).

Deliberate deviations, none of which changes what is computed:

- ``random_masking`` takes optional ``noise`` (``same_mask``: noise whose argsort keeps the batch's visible
  tokens first, ascending, so the reference computes omnimask's mask); without it, it draws
  ``torch.rand`` as the reference does.
- The input is rebuilt from the loader batch's tokens: images ``[B, 3, H, W]`` normalised
  (``ToTensor`` + ``Normalize``) as the tokenizer's ``prepare`` computes it (the same float values omnimask's
  encoder gets; ``Normalize``'s ``(x / 255 - mean) / std`` differs from them in the last bit only); a
  filterbank ``[B, 1, T, F]`` as AudioMAE's dataset returns it, already normalised.
- The tiny recipes' sizes are not among the reference's ``mae_vit_*`` constructors: the class is built with
  the recipe's sizes and the constructors' settings (LayerNorm eps 1e-6, ``qkv_bias=True``).
- AudioMAE's ``unpatchify`` hard-codes a 1024 x 128 input; here it uses the model's own input size.
- The reference's ``forward`` returns ``(loss, pred, mask)``: :meth:`MaskedAutoencoderViT.run` does;
  ``forward`` returns the loss alone (what the benchmark times) and :meth:`outputs` the loss and the
  predictions of the hidden tokens.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from benchmarks.reference_timm import Attention, Mlp
from benchmarks.references import Reference
from omnimask.weights.mae import LAYOUT, in_chans, is_audio, patch_size

NORM_EPS = 1e-6
"""``partial(nn.LayerNorm, eps=1e-6)`` of every ``mae_vit_*`` constructor."""
NORM_PIX_EPS = 1e-6
"""``forward_loss``'s ``(var + 1.e-6) ** .5``."""


# ---------------------------------------------------------------- timm 0.3.2 (vision_transformer.py)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``. ``[B, N, D] -> [B, N, D]``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, qkv_bias: bool = True, norm_eps: float = NORM_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.drop_path = nn.Identity()  # drop_path=0.0 in MAE's and AudioMAE's pretraining models
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """``[B, C, H, W] -> [B, (H/p) (W/p), E]``: a Conv2d over non-overlapping ``p x p`` patches, tokens in the
    raster order of its output. ``img_size = (H, W)``; ``patch_hw`` is AudioMAE's ``(W/p, H/p)``."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.img_size = img_size
        self.patch_size = (patch_size, patch_size)
        self.num_patches = (img_size[1] // patch_size) * (img_size[0] // patch_size)
        self.patch_hw = (img_size[1] // patch_size, img_size[0] // patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


# ---------------------------------------------------------------- util/pos_embed.py


def get_1d_sincos_pos_embed_from_grid(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """Positions ``pos`` (any shape, ``M`` values) -> ``[M, embed_dim]``: sines then cosines of
    ``pos / 10000^(2i / embed_dim)``, computed in float64 (``np.float``)."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    angles = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def get_2d_sincos_pos_embed_from_grid(embed_dim: int, grid: np.ndarray) -> np.ndarray:
    """``grid [2, 1, h, w]`` (column coordinates first) -> ``[h w, embed_dim]``: the first half of the channels
    encodes ``grid[0]``, the second ``grid[1]``."""
    first = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])
    second = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])
    return np.concatenate([first, second], axis=1)


def get_2d_sincos_pos_embed_flexible(embed_dim: int, grid_size: tuple[int, int], cls_token: bool = False) -> np.ndarray:
    """The table ``[(1 if cls_token) + h w, embed_dim]`` over an ``h x w = grid_size`` grid, rows in raster order
    (row ``r w + c`` encodes column ``c`` in its first half and row ``r`` in its second); the cls row is zero."""
    h, w = grid_size
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))  # column first, as there
    emb = get_2d_sincos_pos_embed_from_grid(embed_dim, np.stack([cols, rows], axis=0).reshape(2, 1, h, w))
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


# ---------------------------------------------------------------- models_mae.py


class MaskedAutoencoderViT(Reference):
    """MAE (``in_chans=3``, square images) or AudioMAE (``audio_exp``: ``in_chans=1``, ``img_size = (T, F)``).

    ``forward(imgs [B, C, H, W], noise [B, N] or None) -> scalar loss``; :meth:`outputs` also returns the
    predictions of the hidden tokens ``[M, p*p*C]`` (rows by sample, then token ascending)."""

    layout = LAYOUT

    def __init__(
        self,
        *,
        img_size: tuple[int, int],
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        decoder_embed_dim: int,
        decoder_depth: int,
        decoder_num_heads: int,
        mlp_ratio: float,
        norm_pix_loss: bool,
        audio_exp: bool,
        mask_ratio: float,
        prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ):
        super().__init__()
        self.audio_exp = audio_exp
        self.in_chans = in_chans
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.prepare = prepare  # the tokenizer's compact tokens -> float tokens, for args()

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=NORM_EPS)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=NORM_EPS)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans, bias=True)
        self.initialize_weights()

    # ------------------------------------------------------------ construction

    @classmethod
    def from_model(cls, recipe: Any, model: nn.Module) -> "MaskedAutoencoderViT":
        """The reference sized as ``recipe`` (a ``vit`` encoder, ``mae_decoder`` head and ``random`` masker over
        ``image_patches`` or ``audio_fbank`` tokens) holding ``model``'s weights, mapped by
        :data:`omnimask.weights.mae.LAYOUT` and loaded strictly.

        Built on the meta device, its initialisation skipped (every tensor is then loaded: for ViT-B the two
        initialisations cost seconds on a CPU), and given copies of ``model``'s tensors, none shared."""
        with torch.device("meta"):
            ref = cls(**reference_kwargs(recipe))
        state = {k: v.clone() for k, v in LAYOUT.to_reference(model.state_dict(), recipe).items()}
        ref.load_state_dict(state, strict=True, assign=True)
        ref.layout = LAYOUT
        return ref

    def initialize_weights(self) -> None:
        """The fixed tables (``get_2d_sincos_pos_embed`` over the square grid; AudioMAE: the flexible one over
        ``patch_hw``), then MAE's initialisation: xavier-uniform Linears and patch kernel (as a Linear), zero
        biases, unit LayerNorms, cls and mask tokens ``N(0, 0.02)``."""
        if self.audio_exp:
            grid = self.patch_embed.patch_hw
        else:
            side = int(self.patch_embed.num_patches**0.5)
            grid = (side, side)
        for table in (self.pos_embed, self.decoder_pos_embed):
            values = get_2d_sincos_pos_embed_flexible(table.shape[-1], grid, cls_token=True)
            table.data.copy_(torch.from_numpy(values).float().unsqueeze(0))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.zeros_(m.bias)
                nn.init.ones_(m.weight)

    # ------------------------------------------------------------ inputs

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[torch.Tensor, ...]:
        """``(imgs,)`` rebuilt from the batch's tokens (images ``[B, 3, H, W]`` normalised; AudioMAE: the
        normalised filterbank ``[B, 1, T, F]``); with ``same_mask``, ``(imgs, noise [B, N])`` whose argsort keeps
        the batch's visible tokens first, ascending (the order omnimask's ``ids_keep`` has)."""
        tokens = batch["tokens"]
        x = self.prepare(tokens) if self.prepare is not None else tokens.float()
        imgs = self.unpatchify(x)
        if not same_mask:
            return (imgs,)
        mask = batch["mask"]
        n = mask.shape[1]
        hidden = n - int(n * (1 - self.mask_ratio))
        if int(mask[0].sum()) != hidden:
            raise ValueError(f"the batch hides {int(mask[0].sum())} of {n} tokens; random_masking hides {hidden}")
        return imgs, mask.float() + torch.arange(n, device=mask.device) / (2 * n)

    # ------------------------------------------------------------ models_mae.py

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, (H/p)(W/p), p*p*C]``, values ordered (row, column, channel)."""
        p = self.patch_embed.patch_size[0]
        b, c = imgs.shape[:2]
        h, w = imgs.shape[2] // p, imgs.shape[3] // p
        x = imgs.reshape(b, c, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(b, h * w, p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`patchify`: ``[B, N, p*p*C] -> [B, C, H, W]`` at the model's input size."""
        p = self.patch_embed.patch_size[0]
        height, width = self.patch_embed.img_size
        h, w, c = height // p, width // p, self.in_chans
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float, noise: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep the ``int(L (1 - mask_ratio))`` tokens of least noise: ``x [B, L, D]`` -> ``(x_masked [B, L_keep, D],
        mask [B, L] (1 = hidden), ids_restore [B, L])``."""
        n, length, d = x.shape
        len_keep = int(length * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(n, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(n, length, device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(
        self, x: torch.Tensor, mask_ratio: float, noise: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``imgs [B, C, H, W]`` -> ``(latent [B, 1 + L_keep, E], mask [B, L], ids_restore [B, L])``."""
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        cls_tokens = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """``latent [B, 1 + L_keep, E]`` -> predictions of every token ``[B, L, p*p*C]`` (the cls row removed)."""
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the hidden tokens of each token's mean squared error against its (per-token normalised,
        with ``norm_pix_loss``: unbiased variance, eps 1e-6) patch values."""
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + NORM_PIX_EPS) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def run(self, imgs: torch.Tensor, noise: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reference's ``forward``: ``(loss, pred [B, L, p*p*C], mask [B, L])``."""
        latent, mask, ids_restore = self.forward_encoder(imgs, self.mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    def outputs(self, imgs: torch.Tensor, noise: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, pred of the hidden tokens [M, p*p*C])``, rows by sample then token position ascending."""
        loss, pred, mask = self.run(imgs, noise)
        return loss, pred[mask.bool()]

    def forward(self, imgs: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        # outputs(...)[0] without selecting the hidden rows, whose count a compiled step would read back
        return self.run(imgs, noise)[0]


BASELINE = MaskedAutoencoderViT
"""The reference class :func:`benchmarks.references.reference_for` builds (``from_model``) for the mae_image and
audiomae recipes."""


def reference_kwargs(recipe: Any) -> dict[str, Any]:
    """``MaskedAutoencoderViT``'s arguments for ``recipe``, as MAE's ``main_pretrain.py`` (images) or AudioMAE's
    (``in_chans=1, audio_exp=True, img_size=(target_length, num_mel_bins)``) builds it with the recipe's sizes;
    a ValueError for a recipe the reference cannot compute."""
    from omnimask.components.encoders import VIT_SIZES
    from omnimask.core import registry

    m = recipe.config.model
    parts = (m.tokenizer.name, m.encoder.name, m.head.name, m.masker.name)
    if parts[0] not in ("image_patches", "audio_fbank") or parts[1:] != ("vit", "mae_decoder", "random"):
        raise ValueError(f"MAE's reference computes image_patches/audio_fbank + vit + mae_decoder + random, got {parts}")
    if m.decoder_masker is not None:
        raise ValueError("MAE's reference has no decoder masker")
    if m.target.name not in ("pixels", "norm_pixels"):
        raise ValueError(f"MAE's reference has the pixels and norm_pixels (norm_pix_loss) targets, not {m.target.name!r}")
    if getattr(recipe.masker, "count", "keep") != "keep":
        raise ValueError("MAE's random_masking keeps int(L * (1 - mask_ratio)) tokens (masker count: keep)")
    _, enc = registry.check("encoder", m.encoder, "model.encoder")
    _, head = registry.check("head", m.head, "model.head")
    if enc.mlp_ratio != head.mlp_ratio:
        raise ValueError(f"MAE's reference has one mlp_ratio, the recipe {enc.mlp_ratio} and {head.mlp_ratio}")
    dim, depth, heads = VIT_SIZES[enc.size]
    layout = recipe.tokenizer.layout
    p = patch_size(recipe)
    return {
        "img_size": (layout.grid[0] * p, layout.grid[1] * p),
        "patch_size": p,
        "in_chans": in_chans(recipe),
        "embed_dim": enc.dim or dim,
        "depth": enc.depth or depth,
        "num_heads": enc.heads or heads,
        "decoder_embed_dim": head.dim,
        "decoder_depth": head.depth,
        "decoder_num_heads": head.heads,
        "mlp_ratio": enc.mlp_ratio,
        "norm_pix_loss": m.target.name == "norm_pixels",
        "audio_exp": is_audio(recipe),
        "mask_ratio": recipe.masker.ratio,
        "prepare": recipe.tokenizer.prepare,
    }
