"""VideoMAE pretraining as its reference code computes it (MCG-NJU/VideoMAE): the baseline of the ``videomae*`` recipes.

Written from the reference repository's code, with its module structure, parameter names and order of
operations (not from omnimask's models, which it is compared against); omnimask's weights reach it through
:data:`omnimask.weights.videomae.LAYOUT`. Piece by piece:

- :func:`get_sinusoid_encoding_table`: ``modeling_finetune.py`` ``get_sinusoid_encoding_table``: a 1-D table
  over the flat token index, angle ``pos / 10000^(2 (j // 2) / d)``, sine on even and cosine on odd channels,
  computed in float64 and returned as float32 ``[1, N, d]``.
- :class:`PatchEmbed`: ``modeling_finetune.py`` ``PatchEmbed``: a Conv3d with kernel and stride ``(t, p, p)``,
  output flattened to ``[B, N, E]`` in (time, row, column) order.
- :class:`Attention`, :class:`Mlp`, :class:`Block`, :class:`DropPath`: ``modeling_finetune.py``: a bias-free
  ``qkv`` Linear whose bias is ``cat(q_bias, 0, v_bias)`` applied with ``F.linear``; ``q * scale`` before
  ``q @ k^T``; softmax, attention dropout, ``proj``, projection dropout; ``Mlp`` is ``fc1``, GELU, ``fc2``,
  dropout; pre-norm residual block with optional layer scale ``gamma_1``/``gamma_2`` (``init_values > 0``)
  and timm's per-sample ``drop_path`` (timm 0.4.12 ``drop_path``).
- :class:`PretrainVisionTransformerEncoder`, :class:`PretrainVisionTransformerDecoder`,
  :class:`PretrainVisionTransformer`: ``modeling_pretrain.py``: no cls token; the encoder adds its table to
  every patch embedding, keeps ``x[~mask]`` (visible tokens, ascending), runs its blocks and ``norm``;
  ``encoder_to_decoder`` (no bias); the decoder sequence is ``[x_vis + pos[~mask], mask_token + pos[mask]]``
  and ``decoder.head(decoder.norm(.))`` predicts its last ``N_mask`` rows only. Stochastic depth
  ``linspace(0, drop_path_rate, depth)`` in each of the two stacks, with the same rate for both.
- Initialisation (used only where no weights are loaded): ``modeling_pretrain.py``'s encoder and decoder each
  ``apply`` ``_init_weights`` (xavier-uniform Linears, zero biases, unit LayerNorms), which leaves the Conv3d
  at torch's default; ``PretrainVisionTransformer`` defines ``_init_weights`` but never applies it, so
  ``encoder_to_decoder`` keeps ``nn.Linear``'s default, and draws ``mask_token`` from its ``trunc_normal_``
  wrapper (std 0.02, cut at +-0.02).
- :class:`TubeMaskingGenerator`: ``masking_generator.py``: per sample, ``int(ratio * h * w)`` ones among
  ``h * w`` shuffled by ``np.random.shuffle``, tiled over the time slots.
- :meth:`VideoMAEReference.args`: the data pipeline of ``datasets.py`` ``DataAugmentationForVideoMAE``
  (``transforms.py`` ``ToTorchFormatTensor(div=True)`` then ``GroupNormalize``: ``x / 255``, then ``- mean``,
  ``/ std`` per channel) and ``kinetics.py`` ``VideoMAE`` (clip ``[C, T, H, W]``), on the clip the loader's
  tokens hold (the tokenizer's inverse, :meth:`VideoTubeletTokenizer.clips`: crop and resize are the loader's).
- :meth:`VideoMAEReference.outputs`: ``engine_for_pretraining.py`` ``train_one_epoch``: without gradients,
  ``videos * std + mean`` back to [0, 1], cut into ``[B, N, t p p, C]`` (``'b c (t p0) (h p1) (w p2) -> b (t h w)
  (p0 p1 p2) c'``), normalised per token and channel ``(x - mean) / (std_unbiased + 1e-6)`` (``normlize_target``,
  the script's default), the hidden rows kept; ``nn.MSELoss()`` (mean over every value) of the model's output.
- Sizes: ``pretrain_videomae_{small,base,large,huge}_patch16_224`` fix ``qkv_bias=True`` and
  ``norm_layer=partial(nn.LayerNorm, eps=1e-6)``; ``PretrainVisionTransformer`` defaults ``init_values=0.``
  (no layer scale) and ``use_learnable_pos_emb=False``; ``run_mae_pretraining.py`` passes ``drop_path_rate``
  (``--drop_path``, default 0.0, which no pretraining script under ``scripts/`` changes) and
  ``decoder_depth`` (default 4; the large and huge scripts use 12). Widths, depths and heads come from the recipe.

Deliberate deviations:

- ``num_frames``: the reference's pretraining encoder builds ``PatchEmbed`` without it, so its table has 16
  frames' tokens (``PatchEmbed``'s default) and any other clip length fails at the table's addition; here it
  is the recipe's. The target's ``p0=2`` (hard-coded in ``train_one_epoch``) is the recipe's tubelet size.
- ``target="input"``: the tiny recipe's ``pixels`` target (the normalised input values of each hidden token),
  which the reference does not offer (``normlize_target=False`` gives the un-normalised [0, 1] values,
  ``target="raw"`` here). ``target="norm"`` is the reference's default and the ``channel_norm_pixels`` target.
- The loss runs in the caller's precision (float32 in the fidelity checks): the script runs model and loss
  under ``torch.cuda.amp.autocast()``.
- Frame sampling, crop and resize are the loader's (the clip comes from the batch's tokens), not
  ``GroupMultiScaleCrop``'s: the comparison is of the model and the loss on the same clip.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import reference_timm
from benchmarks.reference_timm import DropPath
from benchmarks.references import Reference
from omnimask.core.recipe import MaskedModel, Recipe

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

Target = Literal["norm", "raw", "input"]


def get_sinusoid_encoding_table(n_position: int, d_hid: int) -> torch.Tensor:
    """``[1, n_position, d_hid]`` float32: ``sin`` of ``pos / 10000^(2 (j // 2) / d_hid)`` on even channels ``j``,
    ``cos`` on odd ones (interleaved, not halves), in float64 before the cast."""
    exponent = np.array([2 * (j // 2) / d_hid for j in range(d_hid)])
    table = np.arange(n_position, dtype=np.float64)[:, None] / np.power(10000, exponent)[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float).unsqueeze(0)


class Mlp(reference_timm.Mlp):
    """VideoMAE's ``Mlp``: timm's, without the dropout between the two Linears. ``[B, N, D] -> [B, N, D]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Attention(nn.Module):
    """Multi-head self-attention with VideoMAE's biases: ``q_bias`` and ``v_bias`` ``[D]``, k unbiased.
    ``[B, N, D] -> [B, N, D]``; the attention matrix ``[B, H, N, N]`` is materialised."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * head_dim * num_heads, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """Pre-norm block ``x + drop_path(gamma_1 * attn(norm1 x))``, then the same with ``mlp``/``norm2``/``gamma_2``
    (no ``gamma`` without ``init_values``). ``[B, N, D] -> [B, N, D]``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1, self.gamma_2 = None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma_1 is None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Tubelet embedding: ``[B, C, T, H, W] -> [B, N, E]``, tokens in (time, row, column) order."""

    def __init__(self, *, img_size: int, patch_size: int, in_chans: int, embed_dim: int, num_frames: int, tubelet_size: int):
        super().__init__()
        self.img_size, self.patch_size, self.tubelet_size = img_size, patch_size, tubelet_size
        self.num_patches = (img_size // patch_size) ** 2 * (num_frames // tubelet_size)
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, _, h, w = x.shape
        if (h, w) != (self.img_size, self.img_size):
            raise ValueError(f"input size {h}x{w} differs from the model's {self.img_size}x{self.img_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


def _init_weights(m: nn.Module) -> None:
    """The encoder's and decoder's initialisation: xavier-uniform Linears with zero biases, unit LayerNorms.
    Other modules (the Conv3d tubelet embedding) keep torch's default initialisation."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)


def _stochastic_depth(rate: float, depth: int) -> list[float]:
    return [x.item() for x in torch.linspace(0, rate, depth)]


class PretrainVisionTransformerEncoder(nn.Module):
    """``forward(x [B, C, T, H, W], mask [B, N] bool, True = hidden) -> [B, N_vis, E]``: the visible tokens."""

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rate: float,
        norm_layer: Callable[[int], nn.Module],
        init_values: float,
        num_frames: int,
        tubelet_size: int,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            num_frames=num_frames,
            tubelet_size=tubelet_size,
        )
        # a plain attribute, as the reference's (use_learnable_pos_emb=False): not in the state dict
        self.pos_embed = get_sinusoid_encoding_table(self.patch_embed.num_patches, embed_dim)
        self.blocks = nn.ModuleList(
            Block(
                embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=rate, init_values=init_values, norm_layer=norm_layer
            )
            for rate in _stochastic_depth(drop_path_rate, depth)
        )
        self.norm = norm_layer(embed_dim)
        self.head = nn.Identity()  # encoder_num_classes=0
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.pos_embed.type_as(x).to(x.device).clone().detach()
        b, _, c = x.shape
        x_vis = x[~mask].reshape(b, -1, c)
        for blk in self.blocks:
            x_vis = blk(x_vis)
        return self.norm(x_vis)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x, mask))


class PretrainVisionTransformerDecoder(nn.Module):
    """``forward(x [B, N, D], return_token_num) -> [B, return_token_num, num_classes]``: the last rows' predictions."""

    def __init__(
        self,
        *,
        num_classes: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rate: float,
        norm_layer: Callable[[int], nn.Module],
        init_values: float,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(
                embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=rate, init_values=init_values, norm_layer=norm_layer
            )
            for rate in _stochastic_depth(drop_path_rate, depth)
        )
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor, return_token_num: int) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        if return_token_num > 0:
            return self.head(self.norm(x[:, -return_token_num:]))
        return self.head(self.norm(x))


class PretrainVisionTransformer(nn.Module):
    """``forward(x [B, C, T, H, W], mask [B, N] bool) -> [B, N_mask, 3 t p p]``: predictions of the hidden
    tokens, ascending, each ordered (frame, row, column, channel)."""

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        encoder_embed_dim: int,
        encoder_depth: int,
        encoder_num_heads: int,
        decoder_num_classes: int,
        decoder_embed_dim: int,
        decoder_depth: int,
        decoder_num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        init_values: float = 0.0,
        num_frames: int = 16,
        tubelet_size: int = 2,
        encoder_in_chans: int = 3,
    ):
        super().__init__()
        self.encoder = PretrainVisionTransformerEncoder(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=encoder_in_chans,
            embed_dim=encoder_embed_dim,
            depth=encoder_depth,
            num_heads=encoder_num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            norm_layer=norm_layer,
            init_values=init_values,
            num_frames=num_frames,
            tubelet_size=tubelet_size,
        )
        if decoder_num_classes != encoder_in_chans * tubelet_size * patch_size**2:
            raise ValueError(f"decoder_num_classes {decoder_num_classes} is not a tubelet's value count")
        self.decoder = PretrainVisionTransformerDecoder(
            num_classes=decoder_num_classes,
            embed_dim=decoder_embed_dim,
            depth=decoder_depth,
            num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            norm_layer=norm_layer,
            init_values=init_values,
        )
        self.encoder_to_decoder = nn.Linear(encoder_embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.pos_embed = get_sinusoid_encoding_table(self.encoder.patch_embed.num_patches, decoder_embed_dim)
        # modeling_pretrain.py's trunc_normal_ cuts at one standard deviation, not timm's default of 2 (absolute)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)
        # nothing else here is re-initialised: encoder_to_decoder keeps nn.Linear's default initialisation

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_vis = self.encoder_to_decoder(self.encoder(x, mask))
        b, _, c = x_vis.shape
        # the visible tokens stay in their (ascending) order; each row gets its own position's table entry
        pos = self.pos_embed.expand(b, -1, -1).type_as(x).to(x.device).clone().detach()
        pos_vis = pos[~mask].reshape(b, -1, c)
        pos_mask = pos[mask].reshape(b, -1, c)
        x_full = torch.cat([x_vis + pos_vis, self.mask_token + pos_mask], dim=1)
        return self.decoder(x_full, pos_mask.shape[1])


class TubeMaskingGenerator:
    """``__call__() -> [T * h * w]`` float64 numpy (1 = hidden): one shuffled frame mask of
    ``int(ratio * h * w)`` ones, repeated for each of the ``T`` time slots."""

    def __init__(self, input_size: tuple[int, int, int], mask_ratio: float):
        self.frames, self.height, self.width = input_size
        self.num_patches_per_frame = self.height * self.width
        self.num_masks_per_frame = int(mask_ratio * self.num_patches_per_frame)

    def __call__(self) -> np.ndarray:
        per_frame = np.hstack([np.zeros(self.num_patches_per_frame - self.num_masks_per_frame), np.ones(self.num_masks_per_frame)])
        np.random.shuffle(per_frame)
        return np.tile(per_frame, (self.frames, 1)).flatten()


def tubelet_rows(videos: torch.Tensor, t: int, p: int) -> torch.Tensor:
    """``[B, C, T, H, W] -> [B, N, t p p, C]``: ``'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c'``."""
    b, c, frames, h, w = videos.shape
    x = videos.reshape(b, c, frames // t, t, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, t * p * p, c)


class VideoMAEReference(Reference, PretrainVisionTransformer):
    """The reference's model (its ``state_dict`` is ``PretrainVisionTransformer``'s) and training step:
    ``forward(videos [B, 3, T, H, W], bool_masked_pos [B, N]) -> scalar loss``."""

    def __init__(self, *, target: Target = "norm", mask_ratio: float = 0.9, **model: Any):
        super().__init__(**model)
        self.target = target
        self.mask_ratio = mask_ratio
        self.layout: Any = None  # the ReferenceLayout its weights came through (from_model)
        self.tokenizer: Any = None  # the recipe's video_tubelets tokenizer, whose clips args() normalises

    @classmethod
    def from_model(cls, recipe: Recipe, model: MaskedModel) -> "VideoMAEReference":
        """The reference sized as ``recipe``, holding ``model``'s weights (through the VideoMAE layout, strictly)."""
        from omnimask.components.encoders import VIT_SIZES
        from omnimask.core import registry
        from omnimask.weights.videomae import LAYOUT

        m, tok = recipe.config.model, recipe.tokenizer
        enc, dec = registry.check("encoder", m.encoder)[1], registry.check("head", m.head)[1]
        dim, depth, heads = VIT_SIZES[enc.size]
        for field in ("drop_path", "mlp_ratio"):  # one argument of PretrainVisionTransformer sets both stacks
            if getattr(enc, field) != getattr(dec, field):
                raise ValueError(f"VideoMAE has one {field} for encoder and decoder; the recipe sets two")
        targets: dict[str, Target] = {"channel_norm_pixels": "norm", "pixels": "input"}
        if m.target.name not in targets:
            raise ValueError(f"VideoMAE's baseline has no {m.target.name!r} target")
        ref = cls(
            target=targets[m.target.name],
            mask_ratio=recipe.masker.ratio,
            img_size=tok.image_size,
            patch_size=tok.patch_size,
            num_frames=tok.num_frames,
            tubelet_size=tok.tubelet_size,
            encoder_embed_dim=enc.dim or dim,
            encoder_depth=enc.depth or depth,
            encoder_num_heads=enc.heads or heads,
            decoder_num_classes=recipe.target.dim,
            decoder_embed_dim=dec.dim,
            decoder_depth=dec.depth,
            decoder_num_heads=dec.heads,
            mlp_ratio=enc.mlp_ratio,
            qkv_bias=enc.qkv_bias != "none",
            drop_path_rate=enc.drop_path,
        )
        ref.load_state_dict(LAYOUT.to_reference(model.state_dict(), recipe), strict=True)
        ref.layout = LAYOUT
        ref.tokenizer = recipe.tokenizer
        return ref

    @property
    def window_size(self) -> tuple[int, int, int]:
        """The token grid ``(T / t, H / p, W / p)`` (``run_mae_pretraining.py`` ``args.window_size``)."""
        pe = self.encoder.patch_embed
        side = pe.img_size // pe.patch_size
        return pe.num_patches // side**2, side, side

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(videos [B, 3, T, H, W] float32, bool_masked_pos [B, N] bool)``: the loader's clips normalised as
        the reference's data pipeline does it; the batch's mask, or (without ``same_mask``) a tube mask drawn
        per sample as the reference's dataset draws it."""
        clips = self.tokenizer.clips(batch["tokens"])  # [B, T, H, W, 3] uint8
        videos = clips.permute(0, 4, 1, 2, 3).float().div(255.0).contiguous()
        for c, (m, s) in enumerate(zip(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)):
            videos[:, c].sub_(m).div_(s)  # GroupNormalize's scalar arithmetic, channel by channel
        if same_mask:
            mask = batch["mask"]
        else:
            generator = TubeMaskingGenerator(self.window_size, self.mask_ratio)
            mask = torch.from_numpy(np.stack([generator() for _ in range(videos.shape[0])]))
        return videos, mask.to(videos.device).flatten(1).to(torch.bool)

    def labels(self, videos: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
        """The hidden tokens' targets ``[B, N_mask, t p p C]``, values ordered (frame, row, column, channel)."""
        pe = self.encoder.patch_embed
        with torch.no_grad():
            mean = torch.as_tensor(IMAGENET_DEFAULT_MEAN, device=videos.device)[None, :, None, None, None]
            std = torch.as_tensor(IMAGENET_DEFAULT_STD, device=videos.device)[None, :, None, None, None]
            source = videos if self.target == "input" else videos * std + mean
            rows = tubelet_rows(source, pe.tubelet_size, pe.patch_size)  # [B, N, t p p, C]
            if self.target == "norm":
                spread = rows.var(dim=-2, unbiased=True, keepdim=True).sqrt()
                rows = (rows - rows.mean(dim=-2, keepdim=True)) / (spread + 1e-6)
            patches = rows.flatten(2)
            b, _, c = patches.shape
            return patches[bool_masked_pos].reshape(b, -1, c)

    def outputs(self, videos: torch.Tensor, bool_masked_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, pred [B * N_mask, 3 t p p])``, the predictions ordered (sample, token ascending)."""
        labels = self.labels(videos, bool_masked_pos)
        outputs = PretrainVisionTransformer.forward(self, videos, bool_masked_pos)
        loss = F.mse_loss(outputs, labels)
        return loss, outputs.reshape(-1, outputs.shape[-1])

    def forward(self, videos: torch.Tensor, bool_masked_pos: torch.Tensor) -> torch.Tensor:
        return self.outputs(videos, bool_masked_pos)[0]


BASELINE = VideoMAEReference
"""The reference class of the videomae recipes (:func:`benchmarks.references.reference_for`)."""
