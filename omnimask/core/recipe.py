"""A recipe composes tokenizer, masker, target, encoder, head and loss from a config.

The data-side pieces (tokenizer, masker, target) run in loader workers; the
model-side pieces (encoder, head, loss) form :class:`MaskedModel`. Swapping a masker,
a target or a loss is a config change: nothing here knows which one it holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from omnimask.core import registry
from omnimask.core.config import ComponentSpec, ConfigError, RecipeConfig, from_dict
from omnimask.core.contracts import check_prediction
from omnimask.core.indexing import gather_tokens
from omnimask.core.interfaces import Masker, Modality, Target, Tokenizer, TokenLayout
from omnimask.core.networks import Encoder, Head, Loss, MaskIndex


class MaskedModel(nn.Module):
    """Encoder + head over compact tokens, and the loss of the head's predictions.

    ``forward(tokens [B, N, D], index)`` -> ``pred [B, N_p, D_t]`` (see :class:`MaskIndex`);
    ``loss(batch)`` finalizes the batch's compact targets and applies ``loss_fn`` (the recipe's :class:`Loss`).
    """

    def __init__(self, *, tokenizer: Tokenizer, target: Target, encoder: Encoder, head: Head, loss: Loss):
        super().__init__()
        self.tokenizer = tokenizer
        self.target = target
        self.encoder = encoder
        self.head = head
        self.loss_fn = loss  # not `loss`: that is the batch-to-scalar method below

    def forward(self, tokens: torch.Tensor, index: MaskIndex) -> torch.Tensor:
        latent = self.encoder(self.tokenizer.prepare(tokens), index)
        return self.head(latent, index)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        index = MaskIndex.from_batch(batch)
        pred = self(batch["tokens"], index)
        target = self.target.finalize(self.compact_target(batch, index))
        check_prediction(self.head, self.target, pred, target)
        return self.loss_fn(pred, target)

    @staticmethod
    def compact_target(batch: dict[str, Any], index: MaskIndex | None = None) -> torch.Tensor:
        """The batch's compact targets ``[B, N_p, ...]`` (``[M, ...]`` padded): ``batch["target"]``,
        or, where the loader left them to the model (a ``gathers_tokens`` target), the tokens at
        the predicted positions ``index.ids_predict``, gathered where the batch is (the device)."""
        if "target" in batch:
            return batch["target"]
        index = index or MaskIndex.from_batch(batch)
        return gather_tokens(batch["tokens"], index.ids_predict)


def check_predicted_count(masker: Masker, decoder_masker: Masker, layout: TokenLayout, draws: int = 16) -> None:
    """Dual masking needs the same number of hidden-and-decoded tokens in every sample (batches are
    not padded): check it over ``draws`` seeds, so that a combination that breaks it (a running cell
    over a number of time slots not divisible by 4) fails at load, not at the first batch."""
    counts = {int((torch.as_tensor(masker(layout, s)) & ~torch.as_tensor(decoder_masker(layout, 10_000 + s))).sum()) for s in range(draws)}
    if len(counts) > 1:
        raise ConfigError(
            "model.decoder_masker",
            f"with this masker and token grid {layout.grid} the number of hidden tokens the decoder predicts varies "
            f"between samples ({sorted(counts)}); running_cell needs the tube masker and a number of time slots divisible by 4",
        )


def loss_spec(cfg: RecipeConfig) -> ComponentSpec:
    """The recipe's loss: ``model.loss``, else the head's default (:meth:`Head.loss_for` its validated config)."""
    if cfg.model.loss is not None:
        return cfg.model.loss
    head, head_cfg = registry.check("head", cfg.model.head, "model.head")
    spec = head.loss_for(head_cfg) if hasattr(head, "loss_for") else None
    if spec is None:
        raise ConfigError(
            "model.loss",
            f"head {cfg.model.head.name!r} declares no default loss (Head.default_loss); "
            "name one in model.loss (`omnimask plugins --kind loss` lists them)",
        )
    return spec


def describe_components(cfg: RecipeConfig) -> str:
    """The components a run uses, after overrides, on one line (mae_image_tiny: ``masker random(ratio=0.75,
    count='keep'), target pixels, tokenizer image_patches, encoder vit, head mae_decoder, loss mse``). The masker and the
    target (and a decoder or edge masker) show every parameter, defaults included; a recipe's description
    may no longer say what an override changed."""
    m = cfg.model
    parts = []
    for slot, spec in (("masker", m.masker), ("decoder_masker", m.decoder_masker), ("edge_masker", m.edge_masker), ("target", m.target)):
        if spec is not None:
            _, config = registry.check("target" if slot == "target" else "masker", spec, f"model.{slot}")
            values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
            parts.append(f"{slot} {spec.name}" + (f"({', '.join(f'{k}={v!r}' for k, v in values.items())})" if values else ""))
    parts += [f"{slot} {spec.name}" for slot, spec in (("tokenizer", m.tokenizer), ("encoder", m.encoder), ("head", m.head))]
    return ", ".join([*parts, f"loss {loss_spec(cfg).name}"])


def check_batch_parts(recipe: "Recipe", loss: Optional[type] = None) -> None:
    """``trainer.cpu_batch_parts`` > 1 splits batches by sample: grid batches and a per-sample-mean loss only.
    ``loss``: the built loss's class (default: the class the recipe names)."""
    if recipe.tokenizer.variable_length:
        raise ConfigError(
            "trainer.cpu_batch_parts", f"{type(recipe.tokenizer).__name__} gives padded batches, which do not split by sample; use 1"
        )
    spec = loss_spec(recipe.config)
    if loss is None:
        loss = registry.lookup("loss", spec.name, "model.loss.name")
    if not getattr(loss, "is_sample_mean", False):
        which = "model.loss" if recipe.config.model.loss is not None else f"head {recipe.config.model.head.name!r}'s default"
        raise ConfigError(
            "trainer.cpu_batch_parts",
            f"loss {spec.name!r} ({which}) does not declare itself a mean of "
            "per-sample terms (Loss.is_sample_mean), so its parts' losses cannot be combined; use 1",
        )


@dataclass
class Recipe:
    """The built pieces of a :class:`RecipeConfig`."""

    config: RecipeConfig
    modality: Modality
    tokenizer: Tokenizer
    masker: Masker
    target: Target
    augment: Any
    decoder_masker: Optional[Masker] = None
    edge_masker: Optional[Any] = None

    @classmethod
    def from_config(cls, cfg: RecipeConfig) -> "Recipe":
        modality = registry.lookup("modality", cfg.modality, "modality")()
        m = cfg.model
        tokenizer = registry.build("tokenizer", m.tokenizer, "model.tokenizer")
        if modality.tokenizer_types and not isinstance(tokenizer, modality.tokenizer_types):
            expected = " or ".join(t.__name__ for t in modality.tokenizer_types)
            raise ConfigError("model.tokenizer", f"the {cfg.modality} modality needs {expected}, got {type(tokenizer).__name__}")
        masker = registry.build("masker", m.masker, "model.masker")
        if not isinstance(masker, Masker):
            raise ConfigError("model.masker.name", f"{m.masker.name!r} masks edges; use it as model.edge_masker")
        if tokenizer.variable_length and not masker.shows_hidden:
            raise ConfigError(
                "model.masker",
                f"{type(tokenizer).__name__} gives samples different numbers of tokens, which an encoder of the visible "
                f"tokens cannot batch; use a masker that shows the encoder every token (bert, graphmae), not {m.masker.name!r}",
            )
        if masker.batch_level and (not tokenizer.variable_length or m.decoder_masker is not None):
            raise ConfigError(
                "model.masker",
                f"{m.masker.name!r} masks whole batches, which needs variable-length (padded) "
                "samples and no decoder masker; mask each sample instead (graphmae: count: graph)",
            )
        target = registry.build("target", m.target, "model.target", tokenizer=tokenizer)
        augment = from_dict(modality.AugmentConfig, cfg.data.augment, "data.augment")
        decoder_masker = None
        if m.decoder_masker is not None:
            decoder_masker = registry.build("masker", m.decoder_masker, "model.decoder_masker")
            check_predicted_count(masker, decoder_masker, tokenizer.layout)
        edge_masker = None
        if m.edge_masker is not None:
            edge_masker = registry.build("masker", m.edge_masker, "model.edge_masker")
            if not hasattr(edge_masker, "hide_edges"):
                raise ConfigError("model.edge_masker.name", f"{m.edge_masker.name!r} is a token masker, not an edge masker (edge_random)")
            if not tokenizer.gives_edges:
                raise ConfigError("model.edge_masker", f"{type(tokenizer).__name__} gives no edges to mask")
        return cls(cfg, modality, tokenizer, masker, target, augment, decoder_masker, edge_masker)

    @classmethod
    def check(cls, cfg: RecipeConfig) -> "Recipe":
        """Build the data-side pieces and validate the encoder, head and loss parameters without
        building the model: every config error surfaces here, before any job starts
        (``model.init`` is checked by :func:`omnimask.weights.check_init`, which reads weight files)."""
        recipe = cls.from_config(cfg)
        registry.check("encoder", cfg.model.encoder, "model.encoder")
        registry.check("head", cfg.model.head, "model.head")
        loss, _ = registry.check("loss", loss_spec(cfg), "model.loss")
        if cfg.trainer.cpu_batch_parts > 1:
            check_batch_parts(recipe, loss)
        return recipe

    def build_model(self) -> MaskedModel:
        m = self.config.model
        layout = self.tokenizer.layout
        encoder = registry.build("encoder", m.encoder, "model.encoder", layout=layout)
        head = registry.build("head", m.head, "model.head", layout=layout, encoder_dim=encoder.dim, target_dim=self.target.dim)
        head.bind(encoder)
        loss = registry.build("loss", loss_spec(self.config), "model.loss")
        return MaskedModel(tokenizer=self.tokenizer, target=self.target, encoder=encoder, head=head, loss=loss)
