"""GraphMAE's node masking (hidden nodes shown as a learnable [MASK] or another node's features)
and MaskGAE's edge masking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from omnimask.components.maskers import check_ratio, random_mask
from omnimask.core.interfaces import Masker, TokenLayout
from omnimask.core.registry import register
from omnimask.core.seeding import uniform_words


@register("masker", "graphmae")
class GraphMAEMasker(Masker):
    """GraphMAE's node masking (``encoding_mask_noise``); the encoder sees every node.

    ``count: batch`` (default, as GraphMAE): over the ``T`` nodes of the whole batch (its graphs as one
    graph), ``int(ratio * T)`` hidden, uniformly at random; of those ``H``, ``int((1 - replace_rate) * H)``
    are zeroed for the encoder's learnable [MASK] vector and ``int(replace_rate * H)`` show the features of
    as many distinct random nodes of the batch (any graph's); the one or two that both roundings leave out
    keep their own features. A graph's mask then depends on the other graphs in its batch
    (:meth:`mask_batch`, called by the collate). GraphMAE crashes when ``replace_rate > 0`` rounds to no
    replaced node (its ``perm[-0:]``); here none is replaced.

    ``count: graph``: each graph alone, ``int(ratio * N)`` nodes (at least one), so that a sample's mask
    depends on its seed only; ``replace_rate * H`` of them on average show a random node of the same graph:
    the integer part, and one more with the fraction's probability (``int`` per graph would round the rate
    away on small graphs: with a rate of 0.1, 12 hidden nodes would get 1 replaced node instead of 1.2, and
    fewer than 10 none); the others get [MASK]."""

    shows_hidden = True

    @dataclass
    class Config:
        ratio: float = 0.5
        replace_rate: float = 0.05
        count: Literal["batch", "graph"] = "batch"
        """Take the counts over the whole batch (GraphMAE's), or over each graph alone (a sample's mask a
        function of its own seed, the same in any batch)."""

        def __post_init__(self) -> None:
            check_ratio(self.ratio)
            if not 0.0 <= self.replace_rate <= 1.0:
                raise ValueError(f"replace_rate must be in [0, 1], got {self.replace_rate}")

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @property
    def batch_level(self) -> bool:
        return self.cfg.count == "batch"

    def num_masked(self, layout: TokenLayout) -> int:
        n = layout.num_tokens
        if self.batch_level:
            return int(self.cfg.ratio * n)
        return min(n, max(1, int(self.cfg.ratio * n)))

    def mask_batch(self, tokens: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """GraphMAE's ``encoding_mask_noise`` over the batch's nodes ``[T, F]``: ``(mask [T], corrupted
        features [T, F], mask_token [T])``. Its three ``randperm`` are argsorts of seeded words."""
        t = tokens.shape[0]
        r = self.cfg.replace_rate
        perm = np.argsort(uniform_words(t, seed, "graphmae_nodes"), kind="stable")
        num_mask = int(self.cfg.ratio * t)
        hidden = perm[:num_mask]
        mask = np.zeros(t, dtype=bool)
        mask[hidden] = True
        x = tokens.numpy()
        out = x.copy()
        mask_token = np.zeros(t, dtype=bool)
        if r > 0:
            num_noise = int(r * num_mask)
            perm_mask = np.argsort(uniform_words(num_mask, seed, "graphmae_replace"), kind="stable")
            token = hidden[perm_mask[: int((1 - r) * num_mask)]]
            noise = hidden[perm_mask[num_mask - num_noise :]] if num_noise else hidden[:0]
            source = np.argsort(uniform_words(t, seed, "graphmae_sources"), kind="stable")[:num_noise]
            out[token] = 0
            out[noise] = x[source]
        else:
            token = hidden
            out[token] = 0
        mask_token[token] = True
        return torch.from_numpy(mask), torch.from_numpy(out), torch.from_numpy(mask_token)

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        return random_mask(layout.num_tokens, self.num_masked(layout), seed)

    def corrupt(self, tokens: torch.Tensor, mask: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features ``[N, F]`` (on the CPU) with the hidden rows replaced (zeros or another node's
        features), and ``mask_token [N]``: the zeroed rows, which get the [MASK] vector.

        In numpy, with the draws of :func:`~omnimask.core.seeding.uniform_words`: for a small graph far cheaper
        than a seeded Generator and torch indexing, whose per-call overheads the loader would pay on every sample."""
        x, hidden = tokens.numpy(), np.flatnonzero(np.asarray(mask))
        words = uniform_words(len(hidden) + len(x) + 1, seed, "graphmae_corrupt")
        num_noise = int(self.cfg.replace_rate * len(hidden) + words[-1] / 2**32)  # rounded up with the fraction's probability
        order = np.argsort(words[: len(hidden)], kind="stable")  # which hidden nodes show another's features
        noise, token = hidden[order[:num_noise]], hidden[order[num_noise:]]
        source = np.argsort(words[len(hidden) : -1], kind="stable")[:num_noise]  # distinct nodes of the graph
        out = x.copy()
        out[noise] = x[source]
        out[token] = 0
        mask_token = np.zeros(len(x), dtype=bool)
        mask_token[token] = True
        return torch.from_numpy(out), torch.from_numpy(mask_token)


@register("masker", "edge_random")
class EdgeMasker:
    """MaskGAE's edge masking: hides ``round(ratio * P)`` of a graph's ``P`` edges from the encoder,
    uniformly at random (MaskGAE draws Bernoulli(ratio) per edge: the same share on average).
    ``undirected``: an edge and its reverse are hidden together. Used as ``model.edge_masker``."""

    @dataclass
    class Config:
        ratio: float = 0.7
        undirected: bool = True

        def __post_init__(self) -> None:
            check_ratio(self.ratio)

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def hide_edges(self, edges: torch.Tensor, num_nodes: int, seed: int) -> torch.Tensor:
        """Boolean ``[E]`` for ``edges [2, E]``: True = hidden from the encoder."""
        e = edges.numpy()
        if e.shape[1] == 0:
            return torch.zeros(0, dtype=torch.bool)
        lo, hi = (np.minimum(e[0], e[1]), np.maximum(e[0], e[1])) if self.cfg.undirected else (e[0], e[1])
        pairs, inverse = np.unique(lo * num_nodes + hi, return_inverse=True)
        hidden = random_mask(len(pairs), int(round(self.cfg.ratio * len(pairs))), seed)
        return torch.from_numpy(hidden[inverse.reshape(-1)])
