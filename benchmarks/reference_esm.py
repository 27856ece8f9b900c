"""ESM-2 as facebookresearch/esm writes it, with its own parameter names: the baseline of the ``esm_mlm*`` recipes.

Each piece follows one place of the reference code (written anew here, same structure, names, shapes and
order of operations):

- :class:`ESM2` -- ``esm/model/esm2.py``, ``ESM2._init_submodules`` and ``ESM2.forward``: ``embed_tokens``
  (``padding_idx`` = ``<pad>``, ``embed_scale`` 1); token dropout (``<mask>`` rows zeroed, then
  ``x * (1 - 0.15 * 0.8) / (1 - share of <mask> among the non-pad tokens)``); padding rows zeroed;
  ``[B, T, E] -> [T, B, E]``; the key padding mask dropped when the batch has no padding; the layers;
  ``emb_layer_norm_after``; back to ``[B, T, E]``; ``lm_head`` over every position. The contact head is
  built (its ``regression`` is part of the state dict) but, as with ``return_contacts=False``, not run.
- :class:`TransformerLayer` -- ``esm/modules.py``, ``TransformerLayer`` with ``add_bias_kv=False``,
  ``use_esm1b_layer_norm=True``, ``use_rotary_embeddings=True``: pre-norm, ``self_attn_layer_norm`` ->
  ``self_attn`` -> residual, ``final_layer_norm`` -> ``fc1`` -> ``gelu`` -> ``fc2`` -> residual; no dropout.
- :func:`gelu` -- ``esm/modules.py``, ``gelu`` (the erf form).
- :data:`ESM1bLayerNorm` -- ``esm/modules.py``: apex's ``FusedLayerNorm`` where installed, else
  ``torch.nn.LayerNorm``; both with eps 1e-5 (their default). Here ``torch.nn.LayerNorm``.
- :class:`RobertaLMHead` -- ``esm/modules.py``, ``RobertaLMHead``: ``dense`` -> ``gelu`` -> ``layer_norm``
  -> ``F.linear(x, weight) + bias``, ``weight`` being ``embed_tokens.weight`` (tied).
- :class:`ContactPredictionHead` -- ``esm/modules.py``: only its ``regression`` Linear(layers * heads, 1).
- :class:`MultiheadAttention` -- ``esm/multihead_attention.py``, ``MultiheadAttention.forward`` on the path
  ESM-2 takes (rotary embeddings rule out torch's fused ``multi_head_attention_forward``): separate
  ``q_proj``, ``k_proj``, ``v_proj`` (with bias), ``q *= head_dim ** -0.5`` before the rotation, the heads
  as ``[T, B * H, head_dim]`` -> ``[B * H, T, head_dim]``, ``rot_emb(q, k)``, ``bmm(q, k^T)``, padding keys
  filled with ``-inf``, softmax in float32 (``utils_softmax``), cast back, dropout 0, ``bmm`` with v,
  ``out_proj``.
- :class:`RotaryEmbedding` -- ``esm/rotary_embedding.py``: the persistent ``inv_freq`` buffer
  (``1 / 10000^(2i / head_dim)``), tables ``cat(freqs, freqs)`` over the positions ``0..T-1``, and
  ``x * cos + rotate_half(x) * sin`` with ``rotate_half`` on the two halves of a head.
- :func:`esm1b_alphabet` -- ``esm/data.py``, ``Alphabet.__init__`` and ``Alphabet.from_architecture("ESM-1b")``
  (which ``_load_model_and_alphabet_core_v2`` gives ESM-2): the four leading specials, the 27 sequence
  characters, ``<null_1>`` to round the count to a multiple of 8, ``<mask>``; ``<cls>`` prepended and ``<eos>``
  appended, and ``BatchConverter`` pads with ``<pad>``. omnimask's ``esm`` tokenizer gives the same ids
  (:meth:`PlainESM.from_model` checks the recipe's), so :meth:`PlainESM.args` passes them as they are.
- The loss -- ESM-2's training code is not released; it trained with fairseq's masked LM
  (``fairseq/criterions/masked_lm.py``, ``MaskedLmLoss.forward``): the target holds ``<pad>`` except at the
  predicted positions, where it holds the true id; ``masked_tokens = target != <pad>``; cross-entropy
  of the logits there (``log_softmax`` in float32, ``reduction="sum"``), and the trainer divides the
  gradient by ``sample_size`` = the number of predicted tokens: the mean over them. fairseq's
  ``RobertaLMHead`` projects only ``features[masked_tokens]``; ESM's has no such argument and projects
  every position, so here every position is projected and the predicted rows are taken from the logits
  (the same values, row for row). The masking itself (BERT's 80/10/10) is in the data (fairseq's
  ``MaskTokensDataset``), so there is no mask for this model to draw: both with and without
  ``same_mask`` it gets the batch's corrupted ids.

The weights come from omnimask's model through :data:`omnimask.weights.esm.LAYOUT` (key names and the
q/k/v split). Deviations, none of which changes a value beyond float rounding: ``ESM2.forward`` (a dict of
logits and representations) is :meth:`ESM2.logits` here (the logits), so that ``forward`` can be the
criterion's loss; ``x.masked_fill_`` of the embedding is written out of place; the rotary tables are made
per call, not cached per length; the alphabet keeps only what the model reads; fairseq's ``sum /
sample_size`` is one division of the summed loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.references import Reference
from omnimask.weights.esm import LAYOUT, configs, sizes

ESM1bLayerNorm = nn.LayerNorm
"""``esm.modules.ESM1bLayerNorm`` without apex: ``torch.nn.LayerNorm`` (eps 1e-5)."""


@dataclass(frozen=True)
class Alphabet:
    """The parts of ``esm.data.Alphabet`` the model reads."""

    all_toks: tuple[str, ...]
    prepend_bos: bool
    append_eos: bool

    def __len__(self) -> int:
        return len(self.all_toks)

    def index(self, tok: str) -> int:
        return self.all_toks.index(tok)

    @property
    def padding_idx(self) -> int:
        return self.index("<pad>")

    @property
    def mask_idx(self) -> int:
        return self.index("<mask>")


def esm1b_alphabet() -> Alphabet:
    """ESM-2's alphabet, built as ``esm/data.py`` builds the ESM-1b one."""
    toks = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-"]
    toks += [f"<null_{i + 1}>" for i in range((8 - len(toks) % 8) % 8)]
    return Alphabet((*toks, "<mask>"), prepend_bos=True, append_eos=True)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """``x * Phi(x)`` in its erf form, elementwise."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[..., d] -> [..., d]``: the halves ``(a, b)`` become ``(-b, a)``."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotates ``q, k [B * H, T, head_dim]`` by their positions ``0..T-1``."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim)))

    def tables(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin [1, T, head_dim]``."""
        t = torch.arange(seq_len, device=device).type_as(self.inv_freq)
        freqs = torch.einsum("i,j->ij", t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[None], emb.sin()[None]

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.tables(k.shape[-2], k.device)

        def rotate(x: torch.Tensor) -> torch.Tensor:
            c, s = cos[:, : x.shape[-2]], sin[:, : x.shape[-2]]
            return x * c + rotate_half(x) * s

        return rotate(q), rotate(k)


class MultiheadAttention(nn.Module):
    """Self-attention over ``x [T, B, E]`` -> ``[T, B, E]``; ``key_padding_mask [B, T]`` True at padding."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by {num_heads} heads")
        self.scaling = self.head_dim**-0.5
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.rot_emb = RotaryEmbedding(self.head_dim)

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        tgt_len, bsz, embed_dim = x.shape
        q = self.q_proj(x) * self.scaling
        k = self.k_proj(x)
        v = self.v_proj(x)
        q, k, v = (t.contiguous().view(tgt_len, bsz * self.num_heads, self.head_dim).transpose(0, 1) for t in (q, k, v))
        q, k = self.rot_emb(q, k)
        weights = torch.bmm(q, k.transpose(1, 2))  # [B * H, T, T]
        if key_padding_mask is not None:
            weights = weights.view(bsz, self.num_heads, tgt_len, tgt_len)
            weights = weights.masked_fill(key_padding_mask[:, None, None, :].to(torch.bool), float("-inf"))
            weights = weights.view(bsz * self.num_heads, tgt_len, tgt_len)
        probs = F.softmax(weights, dim=-1, dtype=torch.float32).type_as(weights)
        attn = torch.bmm(probs, v)  # [B * H, T, head_dim]
        attn = attn.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim)
        return self.out_proj(attn)


class TransformerLayer(nn.Module):
    """Pre-norm block over ``x [T, B, E]`` -> ``[T, B, E]``."""

    def __init__(self, embed_dim: int, ffn_embed_dim: int, attention_heads: int):
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, attention_heads)
        self.self_attn_layer_norm = ESM1bLayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, embed_dim)
        self.final_layer_norm = ESM1bLayerNorm(embed_dim)

    def forward(self, x: torch.Tensor, self_attn_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        residual = x
        x = residual + self.self_attn(self.self_attn_layer_norm(x), self_attn_padding_mask)
        residual = x
        x = self.fc2(gelu(self.fc1(self.final_layer_norm(x))))
        return residual + x


class RobertaLMHead(nn.Module):
    """``features [..., E]`` -> logits ``[..., V]``; ``weight`` is the token embedding's (tied)."""

    def __init__(self, embed_dim: int, output_dim: int, weight: nn.Parameter):
        super().__init__()
        self.dense = nn.Linear(embed_dim, embed_dim)
        self.layer_norm = ESM1bLayerNorm(embed_dim)
        self.weight = weight
        self.bias = nn.Parameter(torch.zeros(output_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(gelu(self.dense(features)))
        return F.linear(x, self.weight) + self.bias


class ContactPredictionHead(nn.Module):
    """Only the parameters (``regression``): the contact map is not part of masked-LM training."""

    def __init__(self, in_features: int):
        super().__init__()
        self.regression = nn.Linear(in_features, 1)


class ESM2(nn.Module):
    """``tokens [B, T]`` (int64 ids) -> logits ``[B, T, V]`` at every position."""

    def __init__(self, *, num_layers: int, embed_dim: int, attention_heads: int, alphabet: Alphabet, token_dropout: bool = True):
        super().__init__()
        self.num_layers, self.embed_dim, self.attention_heads = num_layers, embed_dim, attention_heads
        self.alphabet, self.alphabet_size = alphabet, len(alphabet)
        self.padding_idx, self.mask_idx, self.token_dropout = alphabet.padding_idx, alphabet.mask_idx, token_dropout
        self.embed_scale = 1
        self.embed_tokens = nn.Embedding(self.alphabet_size, embed_dim, padding_idx=self.padding_idx)
        self.layers = nn.ModuleList(TransformerLayer(embed_dim, 4 * embed_dim, attention_heads) for _ in range(num_layers))
        self.contact_head = ContactPredictionHead(num_layers * attention_heads)
        self.emb_layer_norm_after = ESM1bLayerNorm(embed_dim)
        self.lm_head = RobertaLMHead(embed_dim, self.alphabet_size, self.embed_tokens.weight)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ESM2.forward(tokens)["logits"]``: ``tokens [B, T]`` -> ``[B, T, V]``."""
        padding_mask = tokens.eq(self.padding_idx)  # [B, T]
        x = self.embed_scale * self.embed_tokens(tokens)
        if self.token_dropout:
            x = x.masked_fill((tokens == self.mask_idx).unsqueeze(-1), 0.0)
            mask_ratio_train = 0.15 * 0.8
            src_lengths = (~padding_mask).sum(-1)
            mask_ratio_observed = (tokens == self.mask_idx).sum(-1).to(x.dtype) / src_lengths
            x = x * (1 - mask_ratio_train) / (1 - mask_ratio_observed)[:, None, None]
        x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        x = x.transpose(0, 1)  # [T, B, E]
        key_padding = padding_mask if padding_mask.any() else None
        for layer in self.layers:
            x = layer(x, self_attn_padding_mask=key_padding)
        x = self.emb_layer_norm_after(x).transpose(0, 1)  # [B, T, E]
        return self.lm_head(x)


class PlainESM(ESM2, Reference):
    """The reference model (its ``state_dict()`` is ``ESM2``'s) with fairseq's masked-LM criterion:
    ``forward(tokens [B, T], target [B, T]) -> scalar loss`` (``Reference.forward``: ``outputs(...)[0]``);
    ``target`` is ``<pad>`` where nothing is predicted and the true id where something is."""

    @classmethod
    def from_model(cls, recipe: Any, model: nn.Module) -> "PlainESM":
        """The reference sized as ``recipe``'s model, holding its weights (``LAYOUT.to_reference``, strict).
        ESM-2's alphabet is fixed: a recipe with other ids (``vocab_size``, ``pad_id``, ``mask_id``) has none."""
        dim, depth, heads = sizes(recipe)
        enc, alphabet = configs(recipe)[0], esm1b_alphabet()
        ours = (enc.vocab_size, enc.pad_id, enc.mask_id)
        if ours != (len(alphabet), alphabet.padding_idx, alphabet.mask_idx):
            raise ValueError(
                f"ESM-2's alphabet has 33 tokens, <pad> 1 and <mask> 32; the recipe has (vocab_size, pad_id, mask_id) = {ours}"
            )
        plain = cls(num_layers=depth, embed_dim=dim, attention_heads=heads, alphabet=alphabet, token_dropout=enc.token_dropout)
        plain.load_state_dict(LAYOUT.to_reference(model.state_dict(), recipe), strict=True)
        plain.layout = LAYOUT
        return plain

    def args(self, batch: dict[str, Any], same_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [B, T] int64, target [B, T] int64)`` from a padded batch: the corrupted ids as the data
        gives them (either way: the masking is the data's), and fairseq's target (``<pad>`` but at the
        hidden positions, ``batch["mask"]``, where the true ids ``batch["target"] [M]`` go, row-major)."""
        tokens = batch["tokens"][..., 0].long()
        target = torch.full_like(tokens, self.padding_idx)
        target[batch["mask"]] = batch["target"].reshape(-1).long()
        return tokens, target

    def outputs(self, tokens: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits [M, V] at the predicted positions, row-major)``."""
        masked_tokens = target.ne(self.padding_idx)
        sample_size = masked_tokens.int().sum()
        logits = self.logits(tokens)[masked_tokens]  # [M, V]
        lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
        loss = F.nll_loss(lprobs, target[masked_tokens], reduction="sum", ignore_index=self.padding_idx)
        return loss / sample_size, logits


BASELINE = PlainESM
"""The reference class :func:`benchmarks.references.reference_for` builds for the ``esm`` + ``lm_head`` recipes."""
