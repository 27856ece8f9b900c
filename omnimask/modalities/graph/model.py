"""GraphMAE's encoders (GAT for node-level, GIN for graph-level pretraining) and its decoder head:
re-mask, one GNN layer, scaled cosine error. GNN layers are PyG's (pure-Python message passing)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from omnimask.core.config import ComponentSpec
from omnimask.core.indexing import select_rows
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import Encoder, Head, Loss, MaskIndex
from omnimask.core.registry import register


def gnn_layer(kind: str, in_dim: int, out_dim: int, heads: int, attn_drop: float, negative_slope: float, last: bool) -> nn.Module:
    """One message-passing layer ``([T, in_dim], edges [2, E]) -> [T, out_dim]``.

    ``gat``: ``heads`` attention heads of ``out_dim / heads`` concatenated; its edges need a self-loop at
    every node (:func:`with_self_loops`, which :class:`GNN` applies once for all its layers).
    ``gin``: sum aggregation (``eps`` 0), then GraphMAE's two-layer MLP (linear ``in -> out``, batch norm,
    PReLU, linear ``out -> out``). A decoder's (``last``) GIN layer keeps the MLP's hidden width at
    ``in_dim`` (GraphMAE's one-layer decoder: ``MLP(2, in_dim, num_hidden, out_dim)`` with ``num_hidden`` the
    encoder's width); GraphMAE's graphs carry a self-loop at every node, so the sum counts each node twice.
    """
    with warnings.catch_warnings():  # PyG's import calls the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from torch_geometric.nn import GATConv, GINConv

    if kind == "gat":
        if out_dim % heads:
            raise ValueError(f"GAT width {out_dim} is not divisible by {heads} heads")
        return GATConv(in_dim, out_dim // heads, heads=heads, dropout=attn_drop, negative_slope=negative_slope, add_self_loops=False)
    hidden = in_dim if last else out_dim
    return GINConv(nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.PReLU(), nn.Linear(hidden, out_dim)))


def with_self_loops(edges: torch.Tensor, num_nodes: int, loop_free: bool | None = None) -> torch.Tensor:
    """``edges [2, E]`` with their self-loops replaced by one at each of the ``num_nodes`` nodes, appended
    (PyG's ``remove_self_loops`` then ``add_self_loops``, which ``GATConv`` does in every layer).

    ``loop_free`` (the collate checks it on the host) skips the removal: a selection whose size
    depends on the data, which reads the count back from the device and breaks a compiled graph.
    """
    if not loop_free:
        edges = edges[:, edges[0] != edges[1]]
    loops = torch.arange(num_nodes, device=edges.device).expand(2, -1)
    return torch.cat([edges, loops], dim=1)


class GNN(nn.Module):
    """``depth`` layers ``[T, in_dim] -> [T, out_dim]``: feature dropout before each layer, then the
    layer, batch norm (GIN), PReLU. An ``encoding`` stack activates its last layer too (GraphMAE).
    GAT layers have ``heads`` heads, the last one ``heads_out``. With ``self_loops`` (always for GAT) the
    layers see a self-loop at every node (:func:`with_self_loops`; ``loop_free``: ``edges`` has none
    already), as GraphMAE's loaders give every graph (``remove_self_loop().add_self_loop()``)."""

    def __init__(
        self,
        *,
        kind: str,
        in_dim: int,
        hidden: int,
        out_dim: int,
        depth: int,
        heads: int,
        heads_out: int,
        in_drop: float,
        attn_drop: float,
        negative_slope: float,
        encoding: bool,
        self_loops: bool = True,
    ):
        super().__init__()
        dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
        self.kind = kind
        self.self_loops = self_loops or kind == "gat"
        self.in_drop = in_drop
        self.layers = nn.ModuleList()
        self.post = nn.ModuleList()
        for i in range(depth):
            last = i == depth - 1
            self.layers.append(
                gnn_layer(kind, dims[i], dims[i + 1], heads_out if last else heads, attn_drop, negative_slope, last and not encoding)
            )
            post: list[nn.Module] = []
            if not last or encoding:
                if kind == "gin":
                    post.append(nn.BatchNorm1d(dims[i + 1]))
                post.append(nn.PReLU())
            self.post.append(nn.Sequential(*post))

    def forward(self, x: torch.Tensor, edges: torch.Tensor, loop_free: bool | None = None) -> torch.Tensor:
        if self.self_loops:
            edges = with_self_loops(edges, x.shape[0], loop_free)
        for layer, post in zip(self.layers, self.post):
            x = post(layer(F.dropout(x, self.in_drop, self.training), edges))
        return x


def flat_nodes(tokens: torch.Tensor, index: MaskIndex) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's nodes ``[T, F]`` (``tokens[valid]``, the layout ``index.edges`` indexes) and the
    flat positions of ``index.mask``."""
    if index.valid is None or index.edges is None:
        raise ValueError("graph encoders and heads need padded graph batches (valid, edges): use the graph_features tokenizer")
    return select_rows(tokens, index.valid, index.num_valid), select_rows(index.mask, index.valid, index.num_valid)


@register("encoder", "gnn")
class GNNEncoder(Encoder):
    """Node features ``[B, N, F]`` (every node, the hidden ones corrupted) -> node latents ``[T, E]``
    for the ``T`` nodes of the batch (``tokens[index.valid]``; graphs are disjoint parts of one big
    graph, PyG's batching). Zeroed hidden nodes get the learnable [MASK] vector; with an edge
    masker the encoder's graph lacks the hidden edges.

    GraphMAE's defaults: ``gat`` (node tasks) hidden 512 in 4 heads, 2 layers, PReLU, in_drop
    0.2, attn_drop 0.1, negative slope 0.2; ``gin`` (graph tasks) with batch norm.
    """

    @dataclass
    class Config:
        kind: Literal["gat", "gin"] = "gat"
        dim: int = 512
        depth: int = 2
        heads: int = 4
        in_drop: float = 0.2
        attn_drop: float = 0.1
        negative_slope: float = 0.2
        self_loops: bool = True
        """A self-loop at every node (existing ones replaced), as GraphMAE's loaders give every graph; GAT
        layers always get them. False: GIN sums over the neighbours and the node itself once."""

        def __post_init__(self) -> None:
            if self.depth < 1 or self.dim < 1 or self.heads < 1:
                raise ValueError("dim, depth and heads must be >= 1")

    def __init__(self, cfg: Config, layout: TokenLayout):
        super().__init__()
        self.dim = cfg.dim
        self.mask_token = nn.Parameter(torch.zeros(1, layout.token_dim))
        self.gnn = GNN(
            kind=cfg.kind,
            in_dim=layout.token_dim,
            hidden=cfg.dim,
            out_dim=cfg.dim,
            depth=cfg.depth,
            heads=cfg.heads,
            heads_out=cfg.heads,
            in_drop=cfg.in_drop,
            attn_drop=cfg.attn_drop,
            negative_slope=cfg.negative_slope,
            encoding=True,
            self_loops=cfg.self_loops,
        )

    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        x, _ = flat_nodes(tokens, index)
        if index.mask_token is not None:
            x = x + select_rows(index.mask_token, index.valid, index.num_valid)[:, None].to(x.dtype) * self.mask_token
        return self.gnn(x, index.edges if index.encoder_edges is None else index.encoder_edges, index.loop_free)


def scaled_cosine_error(pred: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """GraphMAE's SCE: ``mean((1 - cos(pred, target)) ** gamma)`` over rows ``[M, D]``."""
    cos = (F.normalize(pred.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(dim=-1)
    return (1 - cos).pow(gamma).mean()


@register("loss", "sce")
class ScaledCosineLoss(Loss):
    """GraphMAE's scaled cosine error ``mean((1 - cos(pred, target)) ** gamma)`` over the predicted rows
    (``sce_loss``): ``pred, target [M, F]`` (or ``[B, N_p, F]``) -> scalar, in float32."""

    is_sample_mean = True  # a mean over the [B, N_p] tokens of a grid batch, each of equal weight

    @dataclass
    class Config:
        gamma: float = 3.0
        """The exponent (GraphMAE's ``alpha_l``: 1-3); ``model.head.gamma`` where ``model.loss`` is not set."""

        def __post_init__(self) -> None:
            if self.gamma < 1:
                raise ValueError(f"gamma must be >= 1, got {self.gamma}")

    def __init__(self, cfg: Config):
        super().__init__()
        self.gamma = cfg.gamma

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return scaled_cosine_error(pred, target, self.gamma)


@register("head", "graphmae_decoder")
class GraphMAEDecoderHead(Head):
    """``latent [T, E]`` -> reconstructed features ``[M, F]`` of the hidden nodes (row-major, as the
    targets): a bias-free linear map, re-mask (hidden rows set to 0 again), feature dropout, one GNN layer
    on the full graph (every edge) to the feature width, no activation. Default loss: ``sce`` with the
    head's ``gamma``."""

    default_loss = ComponentSpec("sce")

    @dataclass
    class Config:
        kind: Literal["gat", "gin"] = "gat"
        heads: int = 1
        """GAT heads of the decoder layer (concatenated; GraphMAE: 1)."""
        gamma: float = 3.0
        """SCE exponent (GraphMAE's ``alpha_l``: 1-3) of the default loss (``sce``); ``model.loss`` replaces
        that loss, this value with it."""
        attn_drop: float = 0.1
        negative_slope: float = 0.2
        in_drop: float = 0.2
        """Dropout on the decoder layer's input (GraphMAE's decoder gets the encoder's ``feat_drop``)."""
        self_loops: bool = True
        """A self-loop at every node, as the encoder's ``self_loops`` (GAT: always)."""

        def __post_init__(self) -> None:
            ScaledCosineLoss.Config(gamma=self.gamma)  # the loss's bounds, checked where the recipe sets it

    def __init__(self, cfg: Config, layout: TokenLayout, encoder_dim: int, target_dim: int):
        super().__init__()
        self.gamma = cfg.gamma  # the default loss's exponent; the loss in use is MaskedModel.loss_fn
        self.to_decoder = nn.Linear(encoder_dim, encoder_dim, bias=False)
        self.decoder = GNN(
            kind=cfg.kind,
            in_dim=encoder_dim,
            hidden=encoder_dim,
            out_dim=target_dim,
            depth=1,
            heads=cfg.heads,
            heads_out=cfg.heads,
            in_drop=cfg.in_drop,
            attn_drop=cfg.attn_drop,
            negative_slope=cfg.negative_slope,
            encoding=False,
            self_loops=cfg.self_loops,
        )

    def forward(self, latent: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        hidden = select_rows(index.mask, index.valid, index.num_valid)
        h = self.to_decoder(latent).masked_fill(hidden[:, None], 0.0)
        return select_rows(self.decoder(h, index.edges, index.loop_free)[None], hidden[None], index.num_masked)

    @classmethod
    def loss_for(cls, cfg: Config) -> ComponentSpec:
        return ComponentSpec("sce", {"gamma": cfg.gamma})  # GraphMAE's recipes set the exponent on the head
