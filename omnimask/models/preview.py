"""Reconstruction previews: original | masked | reconstruction, one row per sample."""

from __future__ import annotations

from typing import Any

import torch

from omnimask.models.base import MaskIndex
from omnimask.models.layers import gather_tokens
from omnimask.models.recipe import MaskedModel


@torch.no_grad()
def reconstruction_grid(model: MaskedModel, batch: dict[str, Any]) -> torch.Tensor:
    """Images ``[3 * B, 3, H, W]`` in [0, 1]: for each sample its original, the
    visible tokens only (hidden ones grey) and the reconstruction (predicted
    hidden tokens pasted among the visible ones)."""
    tokens, mask, num_hidden = batch["tokens"], batch["mask"], batch["num_hidden"]
    was_training = model.training
    model.eval()
    pred = model(tokens, mask, num_hidden).float()
    model.train(was_training)
    index = MaskIndex.from_mask(mask, num_hidden)
    raw = tokens.float()
    hidden_true = gather_tokens(raw, index.ids_hidden)
    hidden_pred = model.target.to_tokens(pred, hidden_true).clamp(0, 255)
    masked = raw.clone()
    masked[mask] = 127.0
    recon = raw.clone()
    recon.scatter_(1, index.ids_hidden.unsqueeze(-1).expand_as(hidden_pred), hidden_pred)
    tok = model.tokenizer
    rows = torch.stack([tok.detokenize(raw), tok.detokenize(masked), tok.detokenize(recon)], dim=1)
    return rows.flatten(0, 1)
