"""Weights in and out of omnimask: a run's model in the reference repositories' own checkpoint layouts.

- :func:`layout_for`: the :class:`~omnimask.weights.base.ReferenceLayout` of a recipe's family;
- :func:`export_reference`: a run (or one of its checkpoints) -> the file the reference's training script
  would have written (``omnimask export RUN --format reference``);
- :func:`load_init`: a reference-layout checkpoint -> a built model, with a report of what was loaded,
  missing and unexpected (``model.init=PATH``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from omnimask.core.config import ConfigError
from omnimask.core.run_dir import CHECKPOINT_FILE, RunDir
from omnimask.weights.base import ReferenceLayout, State

log = logging.getLogger(__name__)


def family_of(recipe: Any) -> str | None:
    """The reference family of a recipe's encoder and head (None: no reference repository has them)."""
    m = recipe.config.model
    parts = (m.encoder.name, m.head.name)
    if parts == ("vit", "mae_decoder"):
        return "videomae" if recipe.config.modality == "video" else "mae"
    return {("pointmae", "pointmae_decoder"): "pointmae", ("gnn", "graphmae_decoder"): "graphmae", ("esm", "lm_head"): "esm"}.get(parts)


def check_init(recipe: Any) -> None:
    """``model.init`` names a file, and the recipe's model has a reference layout to read it with."""
    if not Path(recipe.config.model.init).is_file():
        raise ConfigError("model.init", f"no such file: {recipe.config.model.init}")
    try:
        layout_for(recipe)
    except ValueError as e:
        raise ConfigError("model.init", str(e)) from None


def layout_for(recipe: Any) -> ReferenceLayout:
    """The reference layout of ``recipe``'s model; a ``ValueError`` naming the parts when none has it."""
    family = family_of(recipe)
    if family is None:
        m = recipe.config.model
        raise ValueError(
            f"no reference checkpoint layout for encoder {m.encoder.name!r} with head {m.head.name!r} "
            "(reference layouts: MAE/AudioMAE, VideoMAE, Point-MAE, GraphMAE, ESM-2)"
        )
    return importlib.import_module(f"omnimask.weights.{family}").LAYOUT


def find_checkpoint(source: str | Path) -> tuple[Path, Path]:
    """``(checkpoint file, config.yaml)`` of a run directory (its newest ``checkpoint-step*``), a checkpoint
    folder of a run, or a ``checkpoint.ckpt`` inside one."""
    path = Path(source)
    if path.is_dir() and RunDir(path).config.is_file():
        steps = RunDir(path).checkpoints()
        if not steps:
            raise FileNotFoundError(f"run {path} has no checkpoint yet (no checkpoint-step*/{CHECKPOINT_FILE})")
        return steps[-1], RunDir(path).config
    ckpt = path / CHECKPOINT_FILE if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"{source} is neither a run directory (with config.yaml) nor a checkpoint")
    config = RunDir(ckpt.parent.parent).config
    if not config.is_file():
        raise FileNotFoundError(f"no config.yaml beside the checkpoint's folder ({config}): pass the run directory")
    return ckpt, config


def model_state(checkpoint: Path) -> State:
    """``MaskedModel.state_dict()`` from a training checkpoint (Lightning's, keys under ``model.``)."""
    obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = obj.get("state_dict", obj)
    return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}


def load_run(source: str | Path) -> tuple[Any, State, Path]:
    """A run's recipe (built from its saved config), its model's weights and the checkpoint read."""
    from omnimask.core.config import RecipeConfig, from_dict
    from omnimask.core.recipe import Recipe

    ckpt, config = find_checkpoint(source)
    recipe = Recipe.from_config(from_dict(RecipeConfig, yaml.safe_load(config.read_text())))
    return recipe, model_state(ckpt), ckpt


def export_reference(source: str | Path, output: str | Path) -> Path:
    """Write a run's model as the reference repository's checkpoint, ``OUTPUT/<recipe family>.pth``."""
    recipe, state, ckpt = load_run(source)
    layout = layout_for(recipe)
    try:
        reference = layout.to_reference(state, recipe)
    except (KeyError, ValueError) as e:  # a setting the reference's model does not have (a cls token in VideoMAE)
        raise ValueError(f"this run's model has no equivalent in {layout.repo}'s layout: {e}") from None
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{layout.name}.pth"
    torch.save(layout.wrap(reference, recipe), path)
    log.info("exported %s as %s's layout to %s", ckpt, layout.repo, path)
    return path


def load_reference_file(path: Path) -> Any:
    """A reference checkpoint, loaded with ``weights_only=True`` (nothing in it runs). ESM's files hold their
    config as an ``argparse.Namespace`` (its loader reads it by attribute): a plain container of values,
    allowed here and nothing else."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class InitReport:
    """What :func:`load_init` did: omnimask tensor names loaded, missing from the file (left as initialised),
    the file's names omnimask has no place for, and names whose shapes differ (not loaded)."""

    path: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(names: list[str]) -> str:
            return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")

        lines = [f"model.init {self.path}: loaded {len(self.loaded)} tensors"]
        for label, names in (
            ("missing (kept as initialised)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape differs (not loaded)", self.mismatched),
        ):
            if names:
                lines.append(f"  {label}: {few(names)}")
        return "\n".join(lines)


def load_init(model: torch.nn.Module, recipe: Any, path: str | Path) -> InitReport:
    """Load a reference-layout checkpoint into ``model`` (a recipe's ``MaskedModel``) and say what happened.
    Loaded with ``weights_only=True``: nothing in the file is executed."""
    layout = layout_for(recipe)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.init: no such file {path}")
    reference = layout.unwrap(load_reference_file(path))
    try:
        known = set(layout.to_reference(model.state_dict(), recipe))
        ours = layout.from_reference(reference, recipe)
    except (KeyError, ValueError) as e:  # a setting the reference's model does not have (a cls token in VideoMAE)
        raise ValueError(f"model.init: this recipe's model has no equivalent in {layout.repo}'s layout: {e}") from None
    own = model.state_dict()
    report = InitReport(path, unexpected=sorted(k for k in reference if k not in known))
    usable = {}
    for k, v in ours.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            report.mismatched.append(f"{k} {list(v.shape)} (model {list(own[k].shape)})")
        else:
            usable[k] = v
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    shared = {own[k].data_ptr() for k in usable}  # a tied weight (ESM's output projection) is loaded with its twin
    report.missing = sorted(k for k in own if k not in usable and own[k].data_ptr() not in shared)
    return report
