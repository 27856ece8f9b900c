"""GraphMAE's node masking (hidden nodes shown as a learnable [MASK] or another node's features)
and MaskGAE's edge masking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from omnimask.modalities.base import Masker, TokenLayout
from omnimask.modalities.maskers import check_ratio, random_mask
from omnimask.registry import register
from omnimask.seeding import uniform_words


@register("masker", "graphmae")
class GraphMAEMasker(Masker):
    """Hides ``int(ratio * N)`` nodes of each graph (at least one), uniformly at random; the encoder
    sees every node. Of the ``H`` hidden nodes, ``replace_rate * H`` on average show the features of a
    random node of the same graph (drawn without replacement): the integer part, and one more with
    the fraction's probability. The others are zeroed and get the encoder's learnable [MASK] vector
    (GraphMAE's ``encoding_mask_noise``).

    GraphMAE counts ``int(replace_rate * H)`` once over the whole batch. Counted per graph, ``int``
    would round the rate away on small graphs: with a rate of 0.1, 12 hidden nodes would get 1 replaced
    node instead of 1.2, and fewer than 10 none. The seeded rounding keeps the configured rate."""

    shows_hidden = True

    @dataclass
    class Config:
        ratio: float = 0.5
        replace_rate: float = 0.05

        def __post_init__(self) -> None:
            check_ratio(self.ratio)
            if not 0.0 <= self.replace_rate <= 1.0:
                raise ValueError(f"replace_rate must be in [0, 1], got {self.replace_rate}")

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def num_masked(self, layout: TokenLayout) -> int:
        n = layout.num_tokens
        return min(n, max(1, int(self.cfg.ratio * n)))

    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray:
        return random_mask(layout.num_tokens, self.num_masked(layout), seed)

    def corrupt(self, tokens: torch.Tensor, mask: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features ``[N, F]`` (on the CPU) with the hidden rows replaced (zeros or another node's
        features), and ``mask_token [N]``: the zeroed rows, which get the [MASK] vector.

        In numpy, with the draws of :func:`~omnimask.seeding.uniform_words` (a few microseconds where a
        seeded Generator and torch indexing of a 20-node graph cost ~0.1 ms a sample in the loader)."""
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
