"""Reconstruction previews: original | masked | reconstruction, one row per sample."""

from __future__ import annotations

from typing import Any

import torch

from omnimask.core.indexing import gather_tokens
from omnimask.core.networks import MaskIndex
from omnimask.core.recipe import MaskedModel


@torch.no_grad()
def reconstruction_grid(model: MaskedModel, batch: dict[str, Any]) -> torch.Tensor:
    """Pictures ``[3 * B, 3, H, W]`` in [0, 1] (what a picture is, the tokenizer's
    ``detokenize`` says: an image, a strip of video frames, a spectrogram): for each
    sample its original, the visible tokens only (hidden ones blank) and the
    reconstruction (predicted tokens pasted among the visible ones)."""
    if batch.get("num_hidden") is None or "mask_token" in batch:
        raise NotImplementedError("previews show grid batches whose encoder saw the visible tokens only")
    tokens = batch["tokens"]
    index = MaskIndex.from_batch(batch)
    was_training = model.training
    model.eval()
    pred = model(tokens, index).float()
    model.train(was_training)
    raw = tokens.float()
    tok = model.tokenizer
    predicted_true = gather_tokens(raw, index.ids_predict)
    predicted = model.target.to_tokens(pred, predicted_true)
    masked = raw.clone()
    masked[index.mask] = tok.blank
    recon = masked.clone()
    recon.scatter_(1, index.ids_predict.unsqueeze(-1).expand_as(predicted), predicted)
    pictures = [tok.detokenize(x, index.coords) for x in (raw, masked, recon)]
    rows = torch.stack(pictures, dim=1)
    return rows.flatten(0, 1)
