"""What image and video share: uint8 pixel tokens normalised on the device, and the crop-and-resize."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from omnimask.core.interfaces import Tokenizer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_table(values: tuple[float, ...], reps: int, device: torch.device) -> torch.Tensor:
    """Per-channel ``values`` repeated ``reps`` times, ``[reps * C]`` float32 on ``device``.

    Eager calls share one table per device (a host-to-device copy each step would wait for the device).
    Under ``torch.compile`` the table is built in the graph, a constant: a cache read there would add a
    guard, and a tokenizer's own dict of tables, filled by the first call, recompiled the loss on the second.
    Every tokenizer with the same values shares the eager table: never modify it in place.
    """
    if torch.compiler.is_compiling():
        return _channel_table(values, reps, device)
    return _cached_channel_table(values, reps, device)


def _channel_table(values: tuple[float, ...], reps: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device).repeat(reps)


_cached_channel_table = functools.lru_cache(maxsize=64)(_channel_table)


class PixelTokenizer(Tokenizer):
    """A tokenizer whose tokens are uint8 RGB values ordered (position, channel).

    Tokens stay uint8 through the loader (4x less to move than floats);
    :meth:`prepare` scales them to [0, 1] and normalises each colour channel with
    ``mean`` and ``std`` on the device, :meth:`restore` undoes it.
    """

    blank = 127.0

    def __init__(self, token_dim: int, mean: tuple[float, ...], std: tuple[float, ...]):
        # prepare(x) = x * scale + shift, per value of a token (channel = index % C)
        self._reps = token_dim // len(mean)
        self._scale = tuple(1.0 / (255.0 * s) for s in std)
        self._shift = tuple(-m / s for m, s in zip(mean, std))

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return channel_table(self._scale, self._reps, device), channel_table(self._shift, self._reps, device)

    def prepare(self, tokens: torch.Tensor) -> torch.Tensor:
        scale, shift = self._affine(tokens.device)
        return tokens.float() * scale + shift

    def restore(self, prepared: torch.Tensor) -> torch.Tensor:
        scale, shift = self._affine(prepared.device)
        return (prepared.float() - shift) / scale


def crop_resize(frames: torch.Tensor, box: tuple[int, int, int, int], size: int, mode: str, flip: bool) -> np.ndarray:
    """uint8 ``frames [N, 3, H, W]`` (any strides) -> ``[N, size, size, 3]``: the box ``(left, top, width,
    height)`` of every frame resized with torch's antialiased uint8 kernel (``mode`` ``"bilinear"`` or
    ``"bicubic"``: Pillow's filters, to within rounding), then mirrored if ``flip``.

    The kernel reads and writes channels-last memory, which is the ``[N, size, size, 3]`` array with no
    copy; frames decoded as ``[H, W, 3]`` arrays and permuted are already in that layout.
    """
    left, top, cw, ch = box
    crop = frames[:, :, top : top + ch, left : left + cw].contiguous(memory_format=torch.channels_last)
    out = F.interpolate(crop, size=(size, size), mode=mode, antialias=True).permute(0, 2, 3, 1)
    return (out.flip(2) if flip else out).numpy()


def check_frame(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` as uint8 of exactly ``shape``, or a ValueError that says what arrived."""
    array = np.asarray(array)
    if array.shape != shape or array.dtype != np.uint8:
        raise ValueError(f"expected uint8 {list(shape)}, got {array.dtype} {list(array.shape)}")
    return array
