"""A Sobel-edge target for image patches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from omnimask.modalities.base import Target, Tokenizer
from omnimask.modalities.targets import hidden_tokens


@dataclass
class SobelConfig:
    eps: float = 1e-6
    """Added to the variance when each patch's edge map is normalised."""


class SobelTarget(Target):
    """The Sobel gradient magnitude of each hidden patch's grey values, ``[N_h, p * p]``, normalised per
    patch. The loader gathers the hidden uint8 patches (``[N_h, p * p * 3]``, MAE's (row, column, channel)
    order); the edges are computed on the device, batched, in :meth:`finalize`."""

    Config = SobelConfig

    def __init__(self, cfg: SobelConfig, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        self.eps = cfg.eps
        self.patch = math.isqrt(tokenizer.layout.token_dim // 3)
        if self.patch * self.patch * 3 != tokenizer.layout.token_dim:
            raise ValueError(f"sobel needs RGB square patches, got token_dim {tokenizer.layout.token_dim}")
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.kernels = torch.stack([kx, kx.T])[:, None]  # [2, 1, 3, 3]

    @property
    def dim(self) -> int:
        return self.patch * self.patch

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden_tokens(tokens, mask)

    def finalize(self, target: torch.Tensor) -> torch.Tensor:
        """``[..., N_h, p * p * 3]`` uint8 -> ``[..., N_h, p * p]`` normalised edge magnitudes."""
        lead, p = target.shape[:-1], self.patch
        grey = target.float().reshape(-1, p, p, 3).mean(dim=-1, keepdim=True).permute(0, 3, 1, 2) / 255.0
        grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), self.kernels.to(grey.device))
        edges = grad.pow(2).sum(dim=1).sqrt().reshape(*lead, p * p)
        mean, var = edges.mean(dim=-1, keepdim=True), edges.var(dim=-1, keepdim=True)
        return (edges - mean) / (var + self.eps).sqrt()
