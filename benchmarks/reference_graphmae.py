"""GraphMAE (Hou et al. 2022) as its reference code computes it: the baseline of the fidelity tests and of
the training-step benchmark.

Written from THUDM/GraphMAE's DGL code (main branch; ``gin.py``/``gat.py``/``data_util.py``/``main_graph.py`` as
of commit a8a51cfe, ``edcoder.py`` as of 77c63386), with its module and parameter names, so that this model's
``state_dict()`` has the keys of a checkpoint that ``main_graph.py``/``main_transductive.py`` save
(``torch.save(model.state_dict(), ...)``). DGL is not needed: its message passing is written in torch as the
reference uses it (sums with ``index_add_``, DGL's ``edge_softmax`` over each node's incoming edges). Edge
features are gathered with ``index_select``, whose backward sums in edge order: advanced indexing's backward
accumulates on several CPU threads in no fixed order, and made two runs of the same step differ by 4e-5 on
train-mode gradients that BatchNorm leaves ill-conditioned.

Which piece follows which reference function:

- :class:`Graph` and :meth:`ReferenceGraphMAE.args`: the data pipeline. ``datasets/data_util.py``
  ``load_graph_classification_dataset`` (and ``load_dataset`` for Cora) turns every graph into
  ``g.remove_self_loop().add_self_loop()`` (DGL appends the ``N`` loops after the graph's edges);
  ``main_graph.py`` ``collate_fn`` batches the graphs with ``dgl.batch`` (node ids offset graph after graph)
  and ``pretrain`` calls ``model(batch_g, batch_g.ndata["attr"])``.
- :class:`ReferenceGraphMAE` is ``models/edcoder.py`` ``PreModel``: ``__init__`` (``enc_num_hidden``,
  ``dec_in_dim``, ``enc_mask_token [1, in_dim]``, ``encoder_to_decoder`` without bias), ``setup_module``
  (the encoder and the one-layer decoder, sharing ``feat_drop``, ``attn_drop`` and ``negative_slope``),
  ``encoding_mask_noise`` (the mask drawn over the whole batched graph: ``int(mask_rate * num_nodes)``
  nodes, of which ``int(replace_rate * M)`` take the features of random nodes of the batch and
  ``int((1 - replace_rate) * M)`` are zeroed and get ``enc_mask_token``) and ``mask_attr_prediction``
  (encode, ``encoder_to_decoder``, re-mask the hidden rows to 0, decode on the full graph, loss on the
  hidden rows). ``sce_loss`` is ``models/loss_func.py``'s.
- :class:`GIN`, :class:`GINConv`, :class:`ApplyNodeFunc`, :class:`MLP`: ``models/gin.py`` (eps 0, not
  learnt: ``h_i' = f((1 + eps) h_i + sum over in-edges of h_j)``; with the loader's self-loop, ``2 h_i +
  neighbours``). An encoding stack wraps every layer's 2-layer MLP in ``ApplyNodeFunc`` (norm, activation);
  a decoding stack's last layer is the bare MLP ``Linear, norm, act, Linear``. ``GIN.forward`` drops out
  each layer's input with ``dropout`` (= ``feat_drop``), the decoder's included.
- :class:`GAT`, :class:`GATConv`: ``models/gat.py`` (``fc`` without bias, ``attn_l`` on the source,
  ``attn_r`` on the destination, leaky ReLU, ``edge_softmax`` by destination, attention dropout, sum of
  ``ft_src * a``, ``bias``, heads concatenated, ``norm``, ``activation``); ``feat_drop`` inside each layer.
- :func:`create_activation`, :func:`create_norm`: ``utils.py``.

What is left out, because no omnimask recipe uses it: residual connections, ``concat_hidden``,
``drop_edge_rate``, the MSE loss, GCN/dot-GAT/MLP decoders and ``graphnorm``; asking for them raises.
``forward`` returns the loss alone (the reference's also returns ``{"loss": loss.item()}``, a host sync
the benchmark should not time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.references import Reference

# --------------------------------------------------------------------------- DGL's graph, as the reference uses it


@dataclass(frozen=True)
class Graph:
    """A directed graph as DGL holds it: edge ``k`` goes from ``src[k]`` to ``dst[k]`` (``[E]`` int64 each);
    ``num_graphs_nodes`` is ``dgl.batch``'s ``batch_num_nodes`` (one entry for an unbatched graph)."""

    src: torch.Tensor
    dst: torch.Tensor
    num_graphs_nodes: tuple[int, ...]

    def num_nodes(self) -> int:
        return sum(self.num_graphs_nodes)

    def remove_self_loop(self) -> "Graph":
        keep = self.src != self.dst
        return Graph(self.src[keep], self.dst[keep], self.num_graphs_nodes)

    def add_self_loop(self) -> "Graph":
        """One loop per node, appended after the edges (DGL's edge order)."""
        loops = torch.arange(self.num_nodes(), device=self.src.device)
        return Graph(torch.cat([self.src, loops]), torch.cat([self.dst, loops]), self.num_graphs_nodes)

    def in_degrees(self) -> torch.Tensor:
        return torch.bincount(self.dst, minlength=self.num_nodes())

    @staticmethod
    def batch(graphs: list["Graph"]) -> "Graph":
        """``dgl.batch``: the graphs' edges one graph after the other, node ids offset by the nodes before."""
        src, dst, offset = [], [], 0
        for g in graphs:
            src.append(g.src + offset)
            dst.append(g.dst + offset)
            offset += g.num_nodes()
        return Graph(torch.cat(src), torch.cat(dst), tuple(n for g in graphs for n in g.num_graphs_nodes))


def sum_by_destination(graph: Graph, messages: torch.Tensor) -> torch.Tensor:
    """``messages [E, ...]`` summed at each edge's destination: ``[num_nodes, ...]`` (DGL's ``fn.sum``; 0 where
    no edge arrives)."""
    out = messages.new_zeros((graph.num_nodes(), *messages.shape[1:]))
    return out.index_add_(0, graph.dst, messages)


def edge_softmax(graph: Graph, e: torch.Tensor) -> torch.Tensor:
    """DGL's ``edge_softmax`` (``norm_by="dst"``): ``e [E, H, 1]`` normalised over the edges entering each node."""
    index = graph.dst.view(-1, *([1] * (e.dim() - 1))).expand_as(e)
    peak = e.new_full((graph.num_nodes(), *e.shape[1:]), float("-inf")).scatter_reduce(0, index, e, "amax")
    z = torch.exp(e - peak.index_select(0, graph.dst))
    return z / sum_by_destination(graph, z).index_select(0, graph.dst)


# --------------------------------------------------------------------------- utils.py


def create_activation(name: Optional[str]) -> nn.Module:
    table = {"relu": nn.ReLU, "gelu": nn.GELU, "prelu": nn.PReLU, "elu": nn.ELU, None: nn.Identity}
    if name not in table:
        raise NotImplementedError(f"{name} is not implemented.")
    return table[name]()


def create_norm(name: Optional[str]) -> type[nn.Module]:
    """The norm's class (``nn.Identity`` for none, which takes and ignores the width)."""
    if name == "graphnorm":
        raise NotImplementedError("graphnorm (utils.NormLayer) is not written here: no omnimask recipe uses it")
    return {"layernorm": nn.LayerNorm, "batchnorm": nn.BatchNorm1d}.get(name, nn.Identity)


# --------------------------------------------------------------------------- gin.py


class MLP(nn.Module):
    """``num_layers`` linear layers ``[T, input_dim] -> [T, output_dim]``, each but the last followed by its
    norm and activation (``linears``, ``norms``, ``activations``)."""

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        *,
        activation: str = "relu",
        norm: Optional[str] = "batchnorm",
    ):
        super().__init__()
        if num_layers < 2:
            raise NotImplementedError("the one-layer MLP (gin.MLP's `linear`) is not used by GraphMAE's GIN")
        self.num_layers, self.output_dim = num_layers, output_dim
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(create_norm(norm)(hidden_dim) for _ in range(num_layers - 1))
        self.activations = nn.ModuleList(create_activation(activation) for _ in range(num_layers - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, norm, act in zip(self.linears[:-1], self.norms, self.activations):
            x = act(norm(linear(x)))
        return self.linears[-1](x)


class ApplyNodeFunc(nn.Module):
    """``mlp``, then ``norm`` over its output, then ``act``."""

    def __init__(self, mlp: MLP, *, norm: Optional[str] = "batchnorm", activation: str = "relu"):
        super().__init__()
        self.mlp = mlp
        self.norm = create_norm(norm)(mlp.output_dim)
        self.act = create_activation(activation)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.mlp(h)))


class GINConv(nn.Module):
    """``[T, in] -> [T, out]``: ``apply_func((1 + eps) h + sum of the in-neighbours' h)``; ``eps`` a buffer [1]."""

    def __init__(self, apply_func: nn.Module, *, init_eps: float = 0.0):
        super().__init__()
        self.apply_func = apply_func
        self.register_buffer("eps", torch.tensor([init_eps]))

    def forward(self, graph: Graph, feat: torch.Tensor) -> torch.Tensor:
        neigh = sum_by_destination(graph, feat.index_select(0, graph.src))
        return self.apply_func((1 + self.eps) * feat + neigh)


class GIN(nn.Module):
    """``num_layers`` :class:`GINConv` ``[T, in_dim] -> [T, out_dim]``; an ``encoding`` stack normalises and
    activates its last layer as the others."""

    def __init__(
        self,
        *,
        in_dim: int,
        num_hidden: int,
        out_dim: int,
        num_layers: int,
        dropout: float,
        activation: str,
        norm: Optional[str],
        encoding: bool = False,
    ):
        super().__init__()
        self.num_layers, self.dropout = num_layers, dropout
        dims = [in_dim] + [num_hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            apply_func: nn.Module = MLP(2, dims[i], num_hidden, dims[i + 1], activation=activation, norm=norm)
            if i < num_layers - 1 or (encoding and norm):
                apply_func = ApplyNodeFunc(apply_func, norm=norm, activation=activation)
            self.layers.append(GINConv(apply_func))
        self.head = nn.Identity()

    def forward(self, g: Graph, inputs: torch.Tensor) -> torch.Tensor:
        h = inputs
        for layer in self.layers:
            h = layer(g, F.dropout(h, p=self.dropout, training=self.training))
        return self.head(h)


# --------------------------------------------------------------------------- gat.py


class GATConv(nn.Module):
    """``[T, in_feats] -> [T, num_heads * out_feats]`` (heads concatenated): DGL-style graph attention."""

    def __init__(
        self,
        in_feats: int,
        out_feats: int,
        num_heads: int,
        *,
        feat_drop: float = 0.0,
        attn_drop: float = 0.0,
        negative_slope: float = 0.2,
        activation: Optional[nn.Module] = None,
        norm: Optional[type[nn.Module]] = None,
    ):
        super().__init__()
        self._num_heads, self._out_feats = num_heads, out_feats
        self.fc = nn.Linear(in_feats, out_feats * num_heads, bias=False)
        self.attn_l = nn.Parameter(torch.empty(1, num_heads, out_feats))
        self.attn_r = nn.Parameter(torch.empty(1, num_heads, out_feats))
        self.feat_drop = nn.Dropout(feat_drop)
        self.attn_drop = nn.Dropout(attn_drop)
        self.leaky_relu = nn.LeakyReLU(negative_slope)
        self.bias = nn.Parameter(torch.zeros(num_heads * out_feats))
        gain = nn.init.calculate_gain("relu")
        for w in (self.fc.weight, self.attn_l, self.attn_r):
            nn.init.xavier_normal_(w, gain=gain)
        self.activation = activation
        self.norm = None if norm is None else norm(num_heads * out_feats)

    def forward(self, graph: Graph, feat: torch.Tensor) -> torch.Tensor:
        if bool((graph.in_degrees() == 0).any()):  # the reference refuses such graphs (allow_zero_in_degree=False)
            raise RuntimeError("There are 0-in-degree nodes in the graph: add a self-loop at every node")
        h = self.feat_drop(feat)
        ft = self.fc(h).view(-1, self._num_heads, self._out_feats)  # [T, H, C]
        el = (ft * self.attn_l).sum(dim=-1, keepdim=True)  # [T, H, 1]
        er = (ft * self.attn_r).sum(dim=-1, keepdim=True)
        e = self.leaky_relu(el.index_select(0, graph.src) + er.index_select(0, graph.dst))  # [E, H, 1]
        a = self.attn_drop(edge_softmax(graph, e))
        rst = sum_by_destination(graph, ft.index_select(0, graph.src) * a)
        rst = rst + self.bias.view(1, self._num_heads, self._out_feats)
        rst = rst.flatten(1)
        if self.norm is not None:
            rst = self.norm(rst)
        if self.activation:
            rst = self.activation(rst)
        return rst


class GAT(nn.Module):
    """``num_layers`` :class:`GATConv`, ``[T, in_dim] -> [T, out_dim * nhead_out]``; an ``encoding`` stack
    activates (and normalises) its last layer too, except a one-layer stack, which the reference builds
    without activation."""

    def __init__(
        self,
        *,
        in_dim: int,
        num_hidden: int,
        out_dim: int,
        num_layers: int,
        nhead: int,
        nhead_out: int,
        activation: str,
        feat_drop: float,
        attn_drop: float,
        negative_slope: float,
        norm: Optional[type[nn.Module]],
        encoding: bool = False,
    ):
        super().__init__()
        last = dict(activation=create_activation(activation) if encoding else None, norm=norm if encoding else None)
        drops = dict(feat_drop=feat_drop, attn_drop=attn_drop, negative_slope=negative_slope)
        self.gat_layers = nn.ModuleList()
        if num_layers == 1:
            self.gat_layers.append(GATConv(in_dim, out_dim, nhead_out, norm=last["norm"], **drops))
        else:
            dims = [in_dim] + [num_hidden * nhead] * (num_layers - 1)
            for i in range(num_layers - 1):
                self.gat_layers.append(GATConv(dims[i], num_hidden, nhead, activation=create_activation(activation), norm=norm, **drops))
            self.gat_layers.append(GATConv(num_hidden * nhead, out_dim, nhead_out, **last, **drops))
        self.head = nn.Identity()

    def forward(self, g: Graph, inputs: torch.Tensor) -> torch.Tensor:
        h = inputs
        for layer in self.gat_layers:
            h = layer(g, h)
        return self.head(h)


# --------------------------------------------------------------------------- edcoder.py, loss_func.py


def sce_loss(x: torch.Tensor, y: torch.Tensor, alpha: float = 3) -> torch.Tensor:
    """Scaled cosine error over rows ``[M, F]``: ``mean((1 - cos(x_i, y_i)) ** alpha)``."""
    cos = (F.normalize(x, p=2, dim=-1) * F.normalize(y, p=2, dim=-1)).sum(dim=-1)
    return (1 - cos).pow_(alpha).mean()


class Masking(NamedTuple):
    """One draw of ``encoding_mask_noise``: node indices into the batched graph (``[M]``, ``[T - M]``, ...) and
    the features ``[len(noise_nodes), F]`` the noise nodes show."""

    mask_nodes: torch.Tensor
    keep_nodes: torch.Tensor
    token_nodes: torch.Tensor
    noise_nodes: torch.Tensor
    noise_features: torch.Tensor


def setup_module(
    m_type: str,
    *,
    enc_dec: str,
    in_dim: int,
    num_hidden: int,
    out_dim: int,
    num_layers: int,
    dropout: float,
    activation: str,
    norm: Optional[str],
    nhead: int,
    nhead_out: int,
    attn_drop: float,
    negative_slope: float,
) -> nn.Module:
    if m_type == "gat":
        return GAT(
            in_dim=in_dim,
            num_hidden=num_hidden,
            out_dim=out_dim,
            num_layers=num_layers,
            nhead=nhead,
            nhead_out=nhead_out,
            activation=activation,
            feat_drop=dropout,
            attn_drop=attn_drop,
            negative_slope=negative_slope,
            norm=create_norm(norm),
            encoding=enc_dec == "encoding",
        )
    if m_type == "gin":
        return GIN(
            in_dim=in_dim,
            num_hidden=num_hidden,
            out_dim=out_dim,
            num_layers=num_layers,
            dropout=dropout,
            activation=activation,
            norm=norm,
            encoding=enc_dec == "encoding",
        )
    raise NotImplementedError(f"{m_type} modules are not written here: no omnimask recipe uses them")


class ReferenceGraphMAE(Reference):
    """GraphMAE's ``PreModel``. ``forward(g, x [T, F], masking=None) -> scalar loss``, ``outputs(...) -> (loss,
    hidden nodes' reconstructions [M, F] in node order)``; ``masking`` None draws the mask as the reference."""

    def __init__(
        self,
        *,
        in_dim: int,
        num_hidden: int,
        num_layers: int,
        nhead: int,
        nhead_out: int,
        activation: str = "prelu",
        feat_drop: float = 0.2,
        attn_drop: float = 0.1,
        negative_slope: float = 0.2,
        norm: Optional[str] = None,
        mask_rate: float = 0.3,
        encoder_type: str = "gat",
        decoder_type: str = "gat",
        replace_rate: float = 0.1,
        alpha_l: float = 2,
    ):
        super().__init__()
        self._mask_rate, self._replace_rate = mask_rate, replace_rate
        self._mask_token_rate = 1 - replace_rate
        if num_hidden % nhead or num_hidden % nhead_out:
            raise ValueError(f"num_hidden {num_hidden} must be divisible by nhead {nhead} and nhead_out {nhead_out}")
        enc_num_hidden, enc_nhead = (num_hidden // nhead, nhead) if encoder_type == "gat" else (num_hidden, 1)
        dec_in_dim = num_hidden
        dec_num_hidden = num_hidden // nhead_out if decoder_type == "gat" else num_hidden
        shared = dict(activation=activation, dropout=feat_drop, attn_drop=attn_drop, negative_slope=negative_slope, norm=norm)
        self.encoder = setup_module(
            encoder_type,
            enc_dec="encoding",
            in_dim=in_dim,
            num_hidden=enc_num_hidden,
            out_dim=enc_num_hidden,
            num_layers=num_layers,
            nhead=enc_nhead,
            nhead_out=enc_nhead,
            **shared,
        )
        self.decoder = setup_module(
            decoder_type,
            enc_dec="decoding",
            in_dim=dec_in_dim,
            num_hidden=dec_num_hidden,
            out_dim=in_dim,
            num_layers=1,
            nhead=nhead,
            nhead_out=nhead_out,
            **shared,
        )
        self.enc_mask_token = nn.Parameter(torch.zeros(1, in_dim))
        self.encoder_to_decoder = nn.Linear(dec_in_dim, dec_in_dim, bias=False)
        self.alpha_l = alpha_l

    @classmethod
    def from_model(cls, recipe: Any, model: nn.Module) -> "ReferenceGraphMAE":
        """The reference sized as ``recipe``'s model, holding its weights (mapped by :data:`LAYOUT`)."""
        from omnimask.core import registry
        from omnimask.weights.graphmae import LAYOUT

        enc = registry.check("encoder", recipe.config.model.encoder, "model.encoder")[1]
        head = registry.check("head", recipe.config.model.head, "model.head")[1]
        shared = {
            name: (getattr(enc, name), getattr(head, name, getattr(enc, name))) for name in ("in_drop", "attn_drop", "negative_slope")
        }
        differ = {name: pair for name, pair in shared.items() if pair[0] != pair[1]}
        if differ:
            raise ValueError(f"GraphMAE's encoder and decoder share these settings; the recipe's differ (encoder, head): {differ}")
        if not (getattr(enc, "self_loops", True) and getattr(head, "self_loops", True)):
            raise ValueError("GraphMAE's loaders give every graph a self-loop at each node (data_util.py); the recipe turns them off")
        if enc.kind == "gat" and enc.depth == 1:
            raise ValueError("GraphMAE's one-layer GAT encoder has no activation; omnimask's has PReLU")
        if head.kind == "gat" and head.heads != 1:
            raise ValueError(
                "GraphMAE's GAT decoder concatenates nhead_out heads of in_dim features each, which its "
                "loss cannot compare with the in_dim features: it runs with nhead_out 1 only"
            )
        masker = recipe.masker.cfg
        ref = cls(
            in_dim=recipe.tokenizer.layout.token_dim,
            num_hidden=enc.dim,
            num_layers=enc.depth,
            nhead=enc.heads,
            nhead_out=head.heads,
            activation="prelu",
            feat_drop=enc.in_drop,
            attn_drop=enc.attn_drop,
            negative_slope=enc.negative_slope,
            norm="batchnorm" if enc.kind == "gin" else None,
            mask_rate=masker.ratio,
            encoder_type=enc.kind,
            decoder_type=head.kind,
            replace_rate=masker.replace_rate,
            alpha_l=head.gamma,
        )
        ref.load_state_dict(LAYOUT.to_reference(model.state_dict(), recipe), strict=True)
        ref.layout = LAYOUT
        return ref.train(model.training)

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[Any, ...]:
        """``(g, x)``: the batch's graphs, each with its self-loops replaced by one per node, batched, and their
        true node features ``[T, F]``; with ``same_mask`` also the loader's :class:`Masking` of them (its
        hidden nodes and the features it showed for each: zeros + [MASK], or another node's)."""
        valid = batch["valid"]
        sizes = valid.sum(dim=1).tolist()
        edges = batch["edges"]
        starts = torch.cumsum(valid.sum(dim=1), 0) - valid.sum(dim=1)
        owner = torch.searchsorted(starts, edges[0], right=True) - 1  # the graph of each edge (collate: graph by graph)
        graphs = []
        for i, n in enumerate(sizes):
            own = edges[:, owner == i] - starts[i]
            graphs.append(Graph(own[0], own[1], (n,)).remove_self_loop().add_self_loop())
        g = Graph.batch(graphs)
        shown = batch["tokens"][valid].float()
        hidden = batch["mask"][valid]
        x = shown.clone()
        x[hidden] = batch["target"].float()
        if not same_mask:
            return g, x
        token = batch["mask_token"][valid]
        noise = hidden & ~token
        return (
            g,
            x,
            Masking(
                hidden.nonzero().squeeze(1),
                (~hidden).nonzero().squeeze(1),
                token.nonzero().squeeze(1),
                noise.nonzero().squeeze(1),
                shown[noise],
            ),
        )

    def draw_masking(self, x: torch.Tensor, mask_rate: float) -> Masking:
        """``encoding_mask_noise``'s draws over the batch's ``T`` nodes, in its order and with its counts (when
        ``int(replace_rate * M)`` is 0 with a positive rate, ``perm_mask[-0:]`` makes every hidden node a
        noise node with no features to take, and the assignment fails, as in the reference)."""
        num_nodes = x.shape[0]
        perm = torch.randperm(num_nodes, device=x.device)
        num_mask_nodes = int(mask_rate * num_nodes)
        mask_nodes, keep_nodes = perm[:num_mask_nodes], perm[num_mask_nodes:]
        if self._replace_rate > 0:
            num_noise_nodes = int(self._replace_rate * num_mask_nodes)
            perm_mask = torch.randperm(num_mask_nodes, device=x.device)
            token_nodes = mask_nodes[perm_mask[: int(self._mask_token_rate * num_mask_nodes)]]
            noise_nodes = mask_nodes[perm_mask[-int(self._replace_rate * num_mask_nodes) :]]
            noise_to_be_chosen = torch.randperm(num_nodes, device=x.device)[:num_noise_nodes]
            return Masking(mask_nodes, keep_nodes, token_nodes, noise_nodes, x[noise_to_be_chosen])
        empty = mask_nodes[:0]
        return Masking(mask_nodes, keep_nodes, mask_nodes, empty, x[empty])

    def encoding_mask_noise(
        self, g: Graph, x: torch.Tensor, mask_rate: float = 0.3, masking: Optional[Masking] = None
    ) -> tuple[Graph, torch.Tensor, Masking]:
        masking = self.draw_masking(x, mask_rate) if masking is None else masking
        out_x = x.clone()
        out_x[masking.token_nodes] = 0.0
        out_x[masking.noise_nodes] = masking.noise_features
        out_x[masking.token_nodes] += self.enc_mask_token
        return g, out_x, masking

    def mask_attr_prediction(
        self, g: Graph, x: torch.Tensor, masking: Optional[Masking] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, recon [T, F], mask_nodes [M])``."""
        pre_use_g, use_x, masking = self.encoding_mask_noise(g, x, self._mask_rate, masking)
        enc_rep = self.encoder(pre_use_g, use_x)
        rep = self.encoder_to_decoder(enc_rep)
        rep[masking.mask_nodes] = 0  # re-mask
        recon = self.decoder(pre_use_g, rep)
        loss = sce_loss(recon[masking.mask_nodes], x[masking.mask_nodes], alpha=self.alpha_l)
        return loss, recon, masking.mask_nodes

    def outputs(self, g: Graph, x: torch.Tensor, masking: Optional[Masking] = None) -> tuple[torch.Tensor, torch.Tensor]:
        loss, recon, mask_nodes = self.mask_attr_prediction(g, x, masking)
        return loss, recon[mask_nodes.sort().values]

    def forward(self, g: Graph, x: torch.Tensor, masking: Optional[Masking] = None) -> torch.Tensor:
        return self.mask_attr_prediction(g, x, masking)[0]


BASELINE = ReferenceGraphMAE
"""The class ``benchmarks.references`` builds for the ``graphmae`` family."""
