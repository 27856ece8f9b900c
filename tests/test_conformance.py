"""Conformance sweeps over the built-ins, in timm's and lightly's habit: every built-in recipe checks, every
built-in tokenizer, masker and target keeps its contract and gives the same output for the same seed on its
modality's generated inputs, and each tiny recipe's first training steps give the losses recorded here.

A new recipe file or a new name in ``registry.BUILTINS`` joins the sweeps by itself (the parameters are read
from them), and fails here until it passes."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
import yaml

from omnimask.cli.check_plugin import SLOTS, check_plugin, ingested_samples
from omnimask.core import registry
from omnimask.core.collate import model_inputs, recipe_collate
from omnimask.core.config import RecipeConfig, load_recipe, recipe_files
from omnimask.data.loader import SamplePipeline
from omnimask.train.pretrain import check_recipe

SWEPT_KINDS = ("tokenizer", "masker", "target")
"""The kinds whose every built-in the sweep runs against its contract."""


@functools.lru_cache(maxsize=None)
def recipe_configs() -> dict[str, RecipeConfig]:
    """Every built-in recipe that loads, by name (read while the tests are collected: one that does not load fails
    :func:`test_every_builtin_recipe_checks`, not the collection of the whole file)."""
    configs = {}
    for name in recipe_files():
        try:
            configs[name] = load_recipe(name)
        except Exception:
            continue
    return configs


@functools.lru_cache(maxsize=None)
def tiny_recipes() -> dict[str, str]:
    """The CPU-sized recipe (``*_tiny``) of each modality."""
    return {cfg.modality: name for name, cfg in recipe_configs().items() if name.endswith("_tiny")}


# --------------------------------------------------------------------------- every recipe checks


@pytest.mark.parametrize("name", sorted(recipe_files()))
def test_every_builtin_recipe_checks(name):
    """Loads and passes the driver's checks (:func:`check_recipe`: every config error of a run, before any job)."""
    cfg = load_recipe(name)
    recipe = check_recipe(cfg)
    assert recipe_files()[name].parent.parent.name == cfg.modality  # a recipe lies in its own modality's folder
    assert recipe.tokenizer.layout.num_tokens > 0 and recipe.masker.num_masked(recipe.tokenizer.layout) > 0


def test_every_modality_with_recipes_has_a_tiny_one():
    """The component sweep runs each component in its modality's CPU-sized recipe."""
    assert set(tiny_recipes()) == {cfg.modality for cfg in recipe_configs().values()}


# --------------------------------------------------------------------------- every component keeps its contract

SLOT_KINDS = {"tokenizer": "tokenizer", "masker": "masker", "target": "target", "decoder_masker": "masker", "edge_masker": "masker"}
"""The recipe slots (``model.<slot>``) the swept kinds fill."""

UNUSED_BY_RECIPES: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {
    ("masker", "edge_random"): ("graph", "edge_masker", {}),  # the README's `graphmae ... model.edge_masker={name: edge_random}`
}
"""Built-ins no recipe uses, ``(kind, name) -> (modality, slot, params)``: where the sweep runs them."""


@dataclass(frozen=True)
class SweepCase:
    """One check-plugin run: a tiny recipe with one slot changed, and the built-ins it exercises."""

    recipe: str
    """The modality's ``*_tiny`` recipe."""
    slot: Optional[str]
    """The ``model.<slot>`` set to ``name`` with ``params`` (None: the recipe as it is)."""
    name: Optional[str]
    params: str
    """``name``'s parameters, as JSON."""
    covers: frozenset[tuple[str, str]]
    """``(kind, name)`` of every swept built-in the run exercises (the recipe's own, and ``name``)."""

    @property
    def id(self) -> str:
        return self.recipe if self.slot is None else f"{self.recipe}+{self.slot}={self.name}"


@functools.lru_cache(maxsize=None)
def sweep_cases() -> tuple[SweepCase, ...]:
    """Each swept built-in in its modality's tiny recipe, with the parameters of a recipe that uses it (the tiny
    recipe's own where it uses it: another recipe's may not fit its grid); built-ins used alike share one run."""
    configs, tiny = recipe_configs(), tiny_recipes()
    uses: dict[tuple[str, str, str], dict[str, Any]] = {}  # (modality, slot, name) -> params
    for name in sorted(configs, key=lambda n: (not n.endswith("_tiny"), n)):
        cfg = configs[name]
        for slot in SLOT_KINDS:
            spec = getattr(cfg.model, slot)
            if spec is not None:
                uses.setdefault((cfg.modality, slot, spec.name), spec.params)
    for (_, name), (modality, slot, params) in UNUSED_BY_RECIPES.items():
        uses.setdefault((modality, slot, name), params)
    runs: dict[tuple[str, Optional[str], Optional[str], str], set[tuple[str, str]]] = {}
    for (modality, slot, name), params in uses.items():
        recipe = tiny[modality]
        own = getattr(configs[recipe].model, slot)
        as_is = own is not None and own.name == name and own.params == params
        key = (recipe, None, None, "{}") if as_is else (recipe, slot, name, json.dumps(params, sort_keys=True))
        runs.setdefault(key, set()).add((SLOT_KINDS[slot], name))
    return tuple(SweepCase(*key, frozenset(covers)) for key, covers in sorted(runs.items(), key=lambda kv: str(kv[0])))


def override_params(params: dict[str, Any]) -> tuple[str, ...]:
    """``check_plugin``'s ``params``: ``key=value`` with the value in YAML (JSON is YAML)."""
    return tuple(f"{key}={json.dumps(value)}" for key, value in params.items())


def test_the_sweep_covers_every_builtin_tokenizer_masker_and_target():
    """A new built-in that no recipe uses fails here until :data:`UNUSED_BY_RECIPES` says where to run it."""
    covered = set().union(*(case.covers for case in sweep_cases()))
    builtins = {(kind, name) for kind in SWEPT_KINDS for name in registry.BUILTINS[kind]}
    assert builtins - covered == set(), "built-ins the sweep does not run"
    assert covered <= builtins  # every recipe's component is a built-in


@pytest.mark.parametrize("case", sweep_cases(), ids=lambda case: case.id)
def test_builtin_components_keep_their_contract_on_generated_inputs(case, tmp_path):
    """``omnimask check-plugin``'s checks (contracts, same seed same output, a finite loss and a backward pass) on
    two of the modality's generated samples. A slot check-plugin cannot fill (a decoder or edge masker) is set in
    a recipe file based on the tiny recipe, which check-plugin then runs with its own masker."""
    masker = recipe_configs()[case.recipe].model.masker
    name, kind, recipe, params = masker.name, "masker", case.recipe, override_params(masker.params)
    if case.slot in SLOTS:
        name, kind, params = case.name, SLOT_KINDS[case.slot], override_params(json.loads(case.params))
    elif case.slot is not None:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({"base": case.recipe, "model": {case.slot: {"name": case.name, **json.loads(case.params)}}}))
    report = check_plugin(name, kind, str(recipe), params, samples=2)
    assert report[0].startswith(f"{kind} {name!r} in recipe {recipe} ") and report[0].endswith("config OK"), report
    assert any(line.startswith("model: forward and backward on a batch of 2, loss ") for line in report), report


@functools.lru_cache(maxsize=None)
def example_samples(
    modality: str, count: int, *, generate: int | None = None, leave_out: tuple[str, ...] = ()
) -> tuple[tuple[str, dict[str, bytes]], ...]:
    """The first ``count`` samples of ``generate`` (default ``count``) example inputs of ``modality``, ingested in
    this process (once per session), leaving out input files with a suffix in ``leave_out``."""
    mod = registry.lookup("modality", modality)()
    with tempfile.TemporaryDirectory() as tmp:
        mod.example_inputs(Path(tmp), generate or count)
        for path in list(Path(tmp).rglob("*")):
            if path.suffix.lower() in leave_out:
                path.unlink()
        samples = ingested_samples(mod, count, Path(tmp))
    assert len(samples) == count, f"{modality}: {len(samples)} of {count} example inputs ingested"
    return tuple(samples)


def test_edge_masker_keeps_its_contract_and_is_deterministic():
    """``edge_random`` as ``model.edge_masker``. check-plugin has no edge-masker slot, and its same-seed check
    compares no ``edge_hidden``, and core/contracts.py has no check for an edge mask: this is that check, on the
    loader pipeline's outputs for the graph modality's generated inputs. Bool ``[E]``; an edge and its reverse
    hidden together; ``round(ratio * P)`` of the ``P`` undirected pairs hidden; the same for the same seed."""
    recipe = check_recipe(load_recipe(tiny_recipes()["graph"], ["model.edge_masker={name: edge_random}"]))
    pipeline = SamplePipeline(recipe, seed=0, strict=True)
    ratio, differs = recipe.edge_masker.cfg.ratio, False
    for key, members in example_samples("graph", 24):
        out = pipeline(key, members, 0)
        edges, hidden = out["edges"], out["edge_hidden"]
        assert hidden.dtype == torch.bool and hidden.shape == (edges.shape[1],)
        assert torch.equal(hidden, pipeline(key, members, 0)["edge_hidden"])
        pairs: dict[tuple[int, int], set[bool]] = {}
        for (a, b), h in zip(edges.T.tolist(), hidden.tolist()):
            pairs.setdefault((min(a, b), max(a, b)), set()).add(h)
        assert all(len(flags) == 1 for flags in pairs.values()), "an edge hidden without its reverse"
        assert sum(flags == {True} for flags in pairs.values()) == round(ratio * len(pairs))
        differs |= not torch.equal(hidden, pipeline(key, members, 1)["edge_hidden"])
    assert differs  # another epoch's seed draws other edges


# --------------------------------------------------------------------------- golden training trajectories

GOLDEN_STEPS, GOLDEN_BATCH = 3, 8

# The loss of each tiny recipe's first GOLDEN_STEPS optimizer steps (first_losses: its modality's example inputs in
# their order, batches of GOLDEN_BATCH, torch.manual_seed(0), AdamW and the schedule as MaskedModelingModule builds
# them, one intra-op thread). Unlike the tests/test_fidelity_* goldens (one forward pass on a reference batch),
# these follow the optimizer and schedule too. A change that moves them must say why when it updates them:
#   OMNIMASK_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_conformance.py -k golden
# prints the new table (and checks nothing).
GOLDEN_LOSSES = {
    "audiomae_tiny": [1.4306774139404297, 1.455207347869873, 1.3401963710784912],
    "esm_mlm_tiny": [3.5144782066345215, 3.478606939315796, 3.4277141094207764],
    "graphmae_tiny": [1.0068721771240234, 0.9265944361686707, 0.7199569344520569],
    "mae_image_tiny": [1.8415228128433228, 2.076777696609497, 1.2792431116104126],
    "pointmae_tiny": [4.790605068206787, 2.7598350048065186, 1.5997177362442017],
    "videomae_tiny": [1.8662762641906738, 1.7623189687728882, 0.6027942895889282],
}


@pytest.fixture
def one_thread():
    """One intra-op thread: the order of a product's partial sums, and so the loss's last bits, then do not depend
    on the machine's core count (``trainer.cpu_batch_parts`` computes the whole batch at once: the same maths)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CODEC_DEPENDENT = {"image": (".jpg",), "audio": (".ogg", ".mp3", ".m4a")}
"""Example inputs whose decoded values depend on the version of a codec library (libjpeg's decoder, FFmpeg's
Vorbis/MP3/AAC encoders: av 18.1.0 and 18.1.1 gave AudioMAE losses 1e-4 apart), left out of the golden losses,
which must change with omnimask's maths only. (Every video example is lossy: videomae_tiny's values are kept as
FFmpeg gives them, and would change with a new H.264/VP9 encoder.)"""


def first_losses(name: str, *, steps: int, batch_size: int) -> list[float]:
    """The training loss of ``name``'s first ``steps`` optimizer steps on the CPU, in this process, on batches of
    ``batch_size`` of its modality's example inputs in order (epoch 0, seed 0, strict), stepped as Lightning steps
    :class:`MaskedModelingModule` (zero the gradients, the module's loss, backward, clip, step, schedule)."""
    from omnimask.train.module import MaskedModelingModule  # imports Lightning

    recipe = check_recipe(load_recipe(name))
    modality = recipe.config.modality
    count = steps * batch_size
    samples = example_samples(modality, count, generate=8 * count, leave_out=CODEC_DEPENDENT.get(modality, ()))
    pipeline, collate = SamplePipeline(recipe, seed=0, strict=True), recipe_collate(recipe)
    torch.manual_seed(0)  # what the module's build_model draws
    module = MaskedModelingModule(recipe, global_batch_size=batch_size)
    schedule = module.configure_optimizers()
    optimizer, scheduler = schedule["optimizer"], schedule["lr_scheduler"]["scheduler"]
    clip = recipe.config.optim.grad_clip
    losses = []
    try:
        for step in range(steps):
            batch = collate([pipeline(key, members, 0) for key, members in samples[step * batch_size : (step + 1) * batch_size]])
            optimizer.zero_grad()
            loss = module.batch_parts(module.compute_loss, model_inputs(batch), module.model.parameters())
            loss.backward()
            if clip is not None:  # Lightning's gradient_clip_val (worker.py): the global norm
                torch.nn.utils.clip_grad_norm_(module.model.parameters(), clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    finally:
        module.teardown("fit")
    return losses


@pytest.mark.parametrize("name", sorted(n for n in recipe_files() if n.endswith("_tiny")))
def test_golden_losses_of_the_first_training_steps(name, one_thread):
    losses = first_losses(name, steps=GOLDEN_STEPS, batch_size=GOLDEN_BATCH)
    if os.environ.get("OMNIMASK_REGEN_GOLDEN") == "1":
        print(f"\n    {name!r}: {losses!r},".replace("'", '"'))
        return
    assert name in GOLDEN_LOSSES, f"no golden losses for {name}: regenerate the table (see GOLDEN_LOSSES)"
    assert losses == GOLDEN_LOSSES[name]  # exact: one process, one thread, a fixed order of the same operations
