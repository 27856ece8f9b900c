"""GraphMAE written the way its code is (Hou et al. 2022, ``PreModel``): a baseline of the training-step benchmark.

A batch is one big graph, as PyG or DGL batch them: nodes ``[T, F]`` and edges
``[2, E]``. The model draws the hidden nodes itself (``encoding_mask_noise``: a
random ``ratio`` of the batch's nodes; ``replace_rate`` of those show another
node's features, the rest are zeroed and get the [MASK] vector). It encodes,
maps to the decoder, re-masks, decodes with one GNN layer over the full graph,
and takes the scaled cosine error on the hidden nodes. The GNN layers are the
same as omnimask's (PyG's), run as PyG runs them (:class:`PlainGNN`). What differs is
where masking and batching happen: omnimask masks in the loader, per graph, and pads
node tokens per graph.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.references import Reference
from omnimask.models.graphmae import GNN, scaled_cosine_error
from omnimask.models.recipe import MaskedModel, Recipe

Masking = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""``(hidden, token, noise, noise_features)``: hidden node indices, those zeroed with the [MASK] vector,
those shown other features, and those features."""


class PlainGNN(nn.Module):
    """A copy of omnimask's :class:`~omnimask.models.graphmae.GNN` run as GraphMAE's code runs its layers:
    each ``GATConv`` removes the graph's self-loops and adds one per node itself, in every layer (omnimask
    adds them once per stack). ``([T, F], edges [2, E]) -> [T, out]``; the same parameter names."""

    def __init__(self, gnn: GNN):
        super().__init__()
        from torch_geometric.nn import GATConv

        self.in_drop = gnn.in_drop
        self.layers, self.post = copy.deepcopy(gnn.layers), copy.deepcopy(gnn.post)
        for layer in self.layers:
            if isinstance(layer, GATConv):
                layer.add_self_loops = True

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        for layer, post in zip(self.layers, self.post):
            x = post(layer(F.dropout(x, self.in_drop, self.training), edges))
        return x


class PlainGraphEncoder(nn.Module):
    def __init__(self, gnn: PlainGNN, token_dim: int):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, token_dim))
        self.gnn = gnn


class PlainGraphDecoder(nn.Module):
    def __init__(self, to_decoder: nn.Linear, decoder: PlainGNN):
        super().__init__()
        self.to_decoder, self.decoder = to_decoder, decoder


class PlainGraphMAE(Reference):
    """``forward(x [T, F], edges [2, E], masking or None) -> scalar loss``."""

    def __init__(self, recipe: Recipe, model: MaskedModel):
        super().__init__()
        # the GNN layers as the recipe builds them (PyG's), copied: the twin shares no parameter with ``model``
        self.encoder = PlainGraphEncoder(PlainGNN(model.encoder.gnn), recipe.tokenizer.layout.token_dim)
        self.head = PlainGraphDecoder(copy.deepcopy(model.head.to_decoder), PlainGNN(model.head.decoder))
        self.gamma = model.head.gamma
        self.ratio, self.replace_rate = recipe.masker.cfg.ratio, recipe.masker.cfg.replace_rate

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[Any, ...]:
        """The batch as one graph with its true features; with ``same_mask``, the loader's masking of it."""
        valid = batch["valid"]
        shown = batch["tokens"][valid].float()
        hidden = batch["mask"][valid]
        x = shown.clone()
        x[hidden] = batch["target"].float()
        if not same_mask:
            return x, batch["edges"]
        token = batch["mask_token"][valid]
        noise = hidden & ~token
        return x, batch["edges"], (hidden.nonzero().squeeze(1), token.nonzero().squeeze(1), noise.nonzero().squeeze(1),
                                   shown[noise])

    def random_masking(self, x: torch.Tensor) -> Masking:
        """GraphMAE's ``encoding_mask_noise`` over the batch's nodes."""
        t = x.shape[0]
        hidden = torch.randperm(t, device=x.device)[: int(self.ratio * t)]
        num_noise = int(self.replace_rate * len(hidden))
        order = torch.randperm(len(hidden), device=x.device)
        noise, token = hidden[order[:num_noise]], hidden[order[num_noise:]]
        return hidden, token, noise, x[torch.randperm(t, device=x.device)[:num_noise]]

    def forward(self, x: torch.Tensor, edges: torch.Tensor, masking: Masking | None = None) -> torch.Tensor:
        hidden, token, noise, noise_features = masking if masking is not None else self.random_masking(x)
        shown = x.clone()
        shown[token] = 0.0
        shown[noise] = noise_features
        shown[token] += self.encoder.mask_token
        rep = self.head.to_decoder(self.encoder.gnn(shown, edges))
        rep[hidden] = 0.0  # re-mask
        recon = self.head.decoder(rep, edges)
        return scaled_cosine_error(recon[hidden], x[hidden], self.gamma)
