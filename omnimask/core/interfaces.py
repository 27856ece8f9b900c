"""The interfaces every modality implements.

Data flows through them in this order (one sample, in a loader worker)::

    shard members --Modality.decoder--> decoded sample --Tokenizer--> tokens [N, D] (+ coords, edges)
    TokenLayout --Masker(seed)--> mask [N] (True = hidden)
    (tokens, mask) --Target--> compact target [N_hidden, ...]  (not for a ``gathers_tokens`` target
                                             of a grid batch: the model gathers it on the device)
    (tokens, mask) --Masker.corrupt(seed)--> what the encoder sees, for maskers that show it
                                             every token (BERT, GraphMAE)

and, on the device, once per batch, ``Tokenizer.prepare`` turns the compact
tokens into the floats the encoder sees and ``Target.finalize`` turns the
compact targets into the float values of the loss. ``Encoder`` and ``Head`` live in :mod:`omnimask.models`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional

import numpy as np
import torch


class QuarantineError(Exception):
    """An input is unusable; the message is the reason written to quarantine.jsonl."""


@dataclass(frozen=True)
class TokenLayout:
    """Shape of a tokenized sample: a grid of tokens of ``token_dim`` values each.

    ``grid`` is the token grid before flattening, e.g. ``(14, 14)`` for a 224px
    image in 16px patches; tokens are flattened in row-major order of ``grid``.
    """

    grid: tuple[int, ...]
    token_dim: int

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)


@dataclass(frozen=True)
class EncodedSample:
    """One preprocessed input, ready to be written to a shard.

    ``payload`` is stored as member ``<key>.<ext>``; ``meta`` as ``<key>.json``.
    ``digest`` (optional) identifies the content, for the duplicate report.
    ``size`` (optional) is the sample's length (residues, nodes), kept in the dataset's
    ``sizes.npy`` for token-budget batching.
    """

    ext: str
    payload: bytes
    meta: dict[str, Any]
    digest: Optional[str] = None
    size: Optional[int] = None


@dataclass
class Tokens:
    """A tokenized sample with structure beyond the token order.

    - ``values [N, D]``: the tokens (numpy array or tensor), as a grid tokenizer returns them alone;
    - ``coords [N, C]``: data-dependent positions (point-cloud group centres), seen by the
      masker, the encoder and the head (``MaskIndex.coords``);
    - ``edges [2, E]`` (int64): directed token pairs ``(source, target)`` (graph edges),
      seen by GNN encoders and heads (``MaskIndex.edges``).
    """

    values: np.ndarray | torch.Tensor
    coords: Optional[torch.Tensor] = None
    edges: Optional[torch.Tensor] = None


class Tokenizer(ABC):
    """Decoded sample -> tokens ``[N, D]`` in a compact dtype (e.g. uint8 pixels), a numpy array
    or a CPU tensor, or a :class:`Tokens` when the tokens carry coordinates or edges. (Numpy
    is cheaper in a loader worker: the batch becomes one tensor in collate.)

    Grid tokenizers give every sample ``layout.num_tokens`` tokens. A ``variable_length``
    tokenizer (protein sequences, graphs) gives each sample its own ``N <= layout.num_tokens``;
    batches are then padded with ``pad_value`` and carry ``valid [B, N]``.
    """

    layout: TokenLayout
    blank: float = 0.0
    """Compact value that stands for a hidden token in previews (mid-grey for pixels)."""
    variable_length: bool = False
    """Whether samples have different numbers of tokens (``layout.grid`` is then ``(N_max,)``)."""
    pad_value: float = 0.0
    """Compact value of the padding tokens of variable-length batches."""
    gives_edges: bool = False
    """Whether its :class:`Tokens` carry ``edges`` (what an edge masker needs)."""

    @abstractmethod
    def __call__(self, sample: Any) -> np.ndarray | torch.Tensor | Tokens:
        """Tokens ``[N, D]`` of one decoded sample (or a :class:`Tokens`)."""

    def num_tokens(self, size: int) -> int:
        """Tokens of a sample of stored ``size`` (its residues, nodes), for token-budget batching
        (at most: crops may shorten it)."""
        return min(size, self.layout.num_tokens)

    def prepare(self, tokens: torch.Tensor) -> torch.Tensor:
        """Model-ready float tokens ``[..., N, D]`` from compact ones (runs on the device)."""
        return tokens.float()

    def restore(self, prepared: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`prepare`: compact-scale float tokens ``[..., N, D]``."""
        return prepared

    def detokenize(self, tokens: torch.Tensor, coords: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compact-scale tokens ``[B, N, D]`` (and their ``coords``) -> pictures ``[B, 3, H, W]`` in [0, 1] (previews)."""
        raise NotImplementedError(f"{type(self).__name__} cannot detokenize")


class Masker(ABC):
    """A pure, seeded function of the token layout (and the tokens' ``coords`` where the
    tokenizer gives them) -> boolean mask ``[N]``, a numpy array or a tensor.

    True marks a hidden token, one the loss predicts. The number of hidden tokens is
    exactly :meth:`num_masked` for every seed, so that samples of a grid layout batch
    without padding (with variable-length tokens ``layout`` is the sample's own).

    Most maskers hide tokens from the encoder (MAE: it sees the visible ones only).
    A masker with ``shows_hidden`` (BERT, GraphMAE) instead shows the encoder every
    token, the hidden ones corrupted by :meth:`corrupt`.

    A masker whose :attr:`batch_level` is True (GraphMAE's, which counts over the whole
    batched graph) is not called per sample: the loader's collate calls :meth:`mask_batch`
    once per batch of variable-length samples, with a seed made from the samples' seeds.
    """

    shows_hidden: ClassVar[bool] = False

    @property
    def batch_level(self) -> bool:
        """Whether the masker draws its mask over the whole batch (:meth:`mask_batch`) instead of per sample."""
        return False

    def mask_batch(self, tokens: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For :attr:`batch_level` maskers: the batch's tokens ``[T, D]`` (every sample's, concatenated) ->
        ``(mask [T], tokens the encoder sees [T, D], mask_token [T])``; pure and seeded."""
        raise NotImplementedError(f"{type(self).__name__} masks each sample; it has no batch-level masking")

    @abstractmethod
    def num_masked(self, layout: TokenLayout) -> int:
        """Exact number of hidden tokens for ``layout``."""

    @abstractmethod
    def __call__(self, layout: TokenLayout, seed: int, coords: Optional[torch.Tensor] = None) -> np.ndarray | torch.Tensor:
        """Boolean mask ``[N]``; the same seed (and coords) gives the same mask in any process."""

    def corrupt(self, tokens: torch.Tensor, mask: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``shows_hidden`` maskers: given the tokens and the mask (as ``__call__`` returned it, array
        or tensor), the tokens ``[N, D]`` the encoder sees, and ``mask_token [N]``
        (True where the encoder puts its learnable [MASK] in place of the token). Hidden rows not
        flagged were replaced by other values or left unchanged. Pure and seeded, as ``__call__``."""
        raise NotImplementedError(f"{type(self).__name__} hides tokens from the encoder; it does not corrupt them")


class Target(ABC):
    """What is predicted for each hidden token, built in two stages.

    ``__call__`` runs per sample in the loader workers and returns the target
    in a compact form (for pixel targets: the hidden tokens, still uint8);
    ``finalize`` runs once per batch on the device and returns the float
    values the loss compares with. Expensive CPU-side targets (features of the
    decoded sample) do their work in ``__call__``; cheap normalisations belong
    in ``finalize``, where they are batched and do not cross process boundaries
    as floats four times the size of the tokens.
    """

    @property
    def gathers_tokens(self) -> bool:
        """Whether the compact target is the predicted tokens themselves (``__call__`` returns
        ``tokens[predicted]``; :class:`omnimask.components.targets.HiddenTokensTarget`). In grid
        batches whose tokens the encoder sees uncorrupted, the loader then sends no target:
        :meth:`omnimask.core.recipe.MaskedModel.compact_target` gathers it from the batch's
        tokens on the device, sparing the loader a gather per sample and the host-to-device
        copy of ``N_hidden / N`` of the tokens' bytes again."""
        return False

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @property
    @abstractmethod
    def dim(self) -> int:
        """Values predicted per hidden token (``D_t``)."""

    @abstractmethod
    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Compact target ``[N_hidden, ...]`` for tokens ``[N, D]`` and mask ``[N]``.

        Rows follow the hidden positions in ascending token order.
        """

    def finalize(self, target: torch.Tensor) -> torch.Tensor:
        """Batched compact targets ``[B, N_h, ...]`` -> float targets ``[B, N_h, D_t]`` (on the device)."""
        return target.float()

    def to_tokens(self, pred: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Predictions ``[B, N_h, D_t]`` as compact-scale tokens ``[B, N_h, D]`` (previews).

        ``tokens`` are the true compact tokens at the same positions, for targets
        that normalise per token and need the statistics back.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot map predictions back to tokens")


class Modality(ABC):
    """Ingest and decoding of one kind of data.

    ``IngestConfig`` and ``AugmentConfig`` are dataclasses validated from the
    ``preprocess`` options and from the recipe's ``data.augment`` section.
    """

    name: ClassVar[str]
    IngestConfig: ClassVar[type]
    AugmentConfig: ClassVar[type]
    tokenizer_types: ClassVar[tuple[type, ...]] = ()
    """Tokenizer classes this modality's decoder feeds (empty: any); a recipe that pairs it with
    another tokenizer fails at load (``Recipe.from_config``)."""

    def encode_file(self, path: Path, options: Any) -> EncodedSample:
        """Decode and validate one raw file; raise :class:`QuarantineError` if unusable.

        Single-record modalities implement this; multi-record ones :meth:`encode_records`."""
        raise NotImplementedError(f"the {self.name} modality reads its inputs with encode_records")

    def encode_records(self, path: Path, options: Any) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
        """The samples of one input as ``(record name, sample or quarantine reason)``.

        Single-record modalities yield one unnamed record (:meth:`encode_file`);
        multi-record ones override this and name each record (``#<name>`` is
        appended to the input's source). An exception other than a per-record
        :class:`QuarantineError` ends the input: what was yielded is kept, the
        rest is quarantined with the error.
        """
        yield "", self.encode_file(path, options)

    def holds_many(self, path: Path) -> bool:
        """Whether the input ``path`` can hold many samples (a FASTA file, a TU dataset folder): each
        of its records is then an input of the manifest, and it gets a preprocessing unit of its own."""
        return False

    def is_dataset_folder(self, path: Path) -> bool:
        """Whether the folder ``path`` is one input (a TU dataset) rather than a folder of inputs."""
        return False

    @abstractmethod
    def decoder(self, augment: Any, tokenizer: Tokenizer) -> Callable[[dict[str, bytes], int], Any]:
        """A picklable ``(members, seed) -> decoded sample`` for the loader workers.

        ``members`` maps extensions (``"jpg"``, ``"json"``) to bytes.
        """

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        """Write about ``count`` real input files of this modality into the folder ``out`` (and a few broken ones,
        to show the quarantine), the same for the same ``seed``; returns the number of files written.

        ``omnimask demo`` preprocesses and trains on them, and ``omnimask check-plugin`` runs a component (or a
        plugin modality) on them, so a plugin modality that implements this is checked like a built-in one."""
        raise NotImplementedError(f"the {self.name} modality writes no example inputs (Modality.example_inputs)")

    def dataset_stats(self, root: Path, tokenizer_params: dict[str, Any], max_samples: Optional[int]) -> dict[str, Any]:
        """Statistics of a shard directory that a recipe's tokenizer needs (``omnimask inspect --stats``):
        a dict with ``summary`` (one line) and ``overrides`` (tokenizer parameters to set), and the figures."""
        raise NotImplementedError(f"the {self.name} modality computes no dataset statistics")
