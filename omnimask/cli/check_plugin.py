"""``omnimask check-plugin NAME``: a component (or a modality) run against its contract on generated input.

The component takes its slot in a recipe (the masker slot for a masker, ..., the recipe's
``modality`` for a modality), the modality writes a few real input files
(:meth:`~omnimask.core.interfaces.Modality.example_inputs`), they are ingested and run
through the loader pipeline (every output checked by :mod:`omnimask.core.contracts`,
twice, to see that the same seed gives the same result), batched, and the model
takes one forward and backward pass on the batch. A masker or a target is also run on
token grids of other sizes than the recipe's, since recipes differ in their grids.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from omnimask.core import registry
from omnimask.core.config import ConfigError, load_recipe
from omnimask.core.interfaces import EncodedSample, Modality, QuarantineError, TokenLayout

SLOTS = {
    "tokenizer": "model.tokenizer",
    "masker": "model.masker",
    "target": "model.target",
    "encoder": "model.encoder",
    "head": "model.head",
    "loss": "model.loss",
    "modality": "modality",
}


def find_kind(name: str, kind: Optional[str]) -> str:
    """The kind of component ``name`` is (given, or the one registry that holds it)."""
    if kind is not None:
        if kind not in SLOTS:
            raise ConfigError("kind", f"check-plugin checks {sorted(SLOTS)}")
        return kind
    if ":" in name:
        raise ConfigError("kind", f"{name!r} is a dotted path: say which kind it is with --kind")
    kinds = [k for k in SLOTS if name in registry.available(k)]
    if len(kinds) != 1:
        raise ConfigError(
            "kind",
            f"{name!r} is {'registered as ' + ' and '.join(kinds) if kinds else 'not registered'}"
            f"; say which kind with --kind (omnimask plugins lists them)",
        )
    return kinds[0]


def generated_samples(modality: str, count: int, workdir: Path) -> list[tuple[str, dict[str, bytes]]]:
    """``count`` or so real samples of ``modality`` (``(key, members)``), from its example input files
    (:meth:`~omnimask.core.interfaces.Modality.example_inputs`), ingested in this process (no Ray): what a shard
    would hold."""
    mod = registry.lookup("modality", modality)()
    try:
        mod.example_inputs(workdir, count)
    except NotImplementedError as e:
        raise ConfigError("modality", f"{e}: check-plugin runs components on a modality's example inputs") from None
    return ingested_samples(mod, count, workdir)


def ingested_samples(mod: Modality, count: int, workdir: Path) -> list[tuple[str, dict[str, bytes]]]:
    """The first ``count`` samples the input files in ``workdir`` give to modality ``mod``'s ingest, in this process
    (``(key, members)``)."""
    from omnimask.data.sources import list_inputs

    samples = []
    for item in list_inputs(workdir, mod.is_dataset_folder):
        try:
            for _, result in mod.encode_records(Path(item.path), mod.IngestConfig()):
                if not isinstance(result, QuarantineError):
                    samples.append((f"{len(samples):09d}", shard_members(mod, result)))
        except QuarantineError:
            continue  # example inputs include a few broken files on purpose
        if len(samples) >= count:
            break
    if not samples:
        raise AssertionError(f"modality {mod.name!r}: none of its example inputs in {workdir} was kept by its ingest")
    return samples[:count]


def shard_members(modality: Any, sample: Any) -> dict[str, bytes]:
    """What a shard stores of one ingested sample, checked as the preprocessing job needs it."""
    who = f"modality {modality.name!r}" if hasattr(modality, "name") else type(modality).__name__
    if not isinstance(sample, EncodedSample):
        raise AssertionError(f"{who}: its ingest gave {type(sample).__name__}; expected an EncodedSample")
    if not (isinstance(sample.ext, str) and sample.ext.isascii() and sample.ext.replace(".", "").isalnum() and sample.ext != "json"):
        raise AssertionError(f"{who}: its ingest gave extension {sample.ext!r}; expected a short ASCII extension, not json")
    if not isinstance(sample.payload, bytes) or not sample.payload:
        raise AssertionError(f"{who}: its ingest gave a {type(sample.payload).__name__} payload; expected non-empty bytes")
    try:
        meta = json.dumps(sample.meta, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{who}: its ingest gave metadata that is not JSON: {e}") from None
    return {sample.ext: sample.payload, "json": meta}


def other_layouts(layout: TokenLayout) -> list[TokenLayout]:
    """Token grids of the same rank as ``layout``'s, smaller, larger and uneven: what other recipes and inputs
    give a masker or a target (a masker that only works on the recipe's grid fails here, not in someone's run)."""
    grids = {
        tuple(max(2, n // 2) for n in layout.grid),
        tuple(n * 2 for n in layout.grid),
        tuple(n + 1 + i for i, n in enumerate(layout.grid)),
    }
    return [TokenLayout(grid, layout.token_dim) for grid in sorted(grids - {layout.grid})]


def check_on_other_layouts(kind: str, name: str, built: Any, structured: bool, *, refusals: bool = False) -> str:
    """A masker's or a target's contract and determinism on :func:`other_layouts` (not where the tokens carry
    coordinates or edges, ``structured``, which random tokens cannot stand for); the report line. A grid the
    masker refuses (``ValueError``) is skipped when the masker is not the one checked, or with ``refusals``:
    parameter values other than the recipe's may not fit every grid (a high ratio hides every row of a small one)."""
    from omnimask.core.contracts import check_mask, check_target

    masker, target = built.masker, built.target
    if structured or masker.batch_level:
        return f"{kind} {name!r}: the recipe's tokens carry coordinates or edges, so only its own inputs are used"
    checked, refused = [], []
    for layout in other_layouts(built.tokenizer.layout):
        try:
            masks = {seed: masker(layout, seed) for seed in (0, 1, 2)}
        except ValueError as e:  # the masker says it does not take this grid
            if not (refusals or kind != "masker"):
                raise AssertionError(f"masker {name!r} refused a {layout.grid} grid: ValueError: {e}") from e
            refused.append(layout.grid)
            continue
        except Exception as e:
            raise AssertionError(f"masker {name!r} failed on a {layout.grid} grid: {type(e).__name__}: {e}") from e
        for seed, mask in masks.items():
            mask = torch.as_tensor(check_mask(masker, mask, layout))
            if not torch.equal(mask, torch.as_tensor(masker(layout, seed))):
                raise AssertionError(f"masker {name!r} on a {layout.grid} grid: the same seed gave another mask")
            tokens = torch.randint(
                0, 255, (layout.num_tokens, layout.token_dim), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
            )
            check_target(target, target(tokens, mask), mask)
        checked.append(layout.grid)
    line = f"{kind} {name!r} on other grids {checked}: within the contract, same seed, same output"
    return line + (f" (the masker refused {refused})" if refused else "")


def pipeline_outputs(kind: str, name: str, built: Any, inputs: list[tuple[str, dict[str, bytes]]]) -> list[dict[str, Any]]:
    """``inputs`` through the loader pipeline of recipe ``built`` (every output checked against the contract),
    the first two twice: the same sample and seed must give the same output."""
    from omnimask.data.loader import SamplePipeline

    pipeline = SamplePipeline(built, seed=0, strict=True)
    outs = [pipeline(key, members, 0) for key, members in inputs]
    again = [pipeline(key, members, 0) for key, members in inputs[:2]]
    for a, b in zip(outs, again):
        for field in sorted(set(a) & {"tokens", "mask", "target", "queries", "coords", "edges", "mask_token"}):
            if not torch.equal(torch.as_tensor(a[field]), torch.as_tensor(b[field])):
                raise AssertionError(f"{kind} {name!r}: the same sample and seed gave a different {field}: not deterministic")
    return outs


FRACTIONS = (0.1, 0.5, 0.9)
"""Values tried for a parameter whose value is a fraction (a ratio, a share): low, middle and high."""


def other_values(config: Any) -> list[tuple[str, Any]]:
    """``(parameter, value)`` pairs to try besides a component's configured ones: every fraction (0.01 to 0.99) at
    :data:`FRACTIONS`, every flag flipped. Counts and sizes are left alone: what fits depends on the grid."""
    if not dataclasses.is_dataclass(config):
        return []
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool):
            out.append((f.name, not value))
        elif isinstance(value, float) and 0.01 <= value <= 0.99:  # not an epsilon
            out += [(f.name, v) for v in FRACTIONS if v != value]
    return out


def check_other_values(kind: str, name: str, cfg: Any, inputs: list[tuple[str, dict[str, bytes]]], structured: bool) -> str:
    """The component's contract and determinism with each of :func:`other_values` in turn (on the generated
    inputs and on :func:`other_layouts`). A value the component refuses with a clear error (``ConfigError`` or
    ``ValueError``, when it is built or on the recipe's grid) is reported, not failed."""
    from omnimask.core.config import ComponentSpec
    from omnimask.train.pretrain import check_recipe

    slot = SLOTS[kind].split(".")[1]
    spec = getattr(cfg.model, slot)
    _, config = registry.check(kind, spec, SLOTS[kind])
    tried, refused = [], []
    for param, value in other_values(config):
        changed = ComponentSpec(spec.name, {**spec.params, param: value})
        varied = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **{slot: changed}))
        try:
            built = check_recipe(varied)
        except (ConfigError, ValueError) as e:
            refused.append(f"{param}={value!r} ({e})")
            continue
        try:
            try:
                pipeline_outputs(kind, name, built, inputs[:3])
            except ValueError as e:  # the value does not fit the recipe's grid: a refusal, not a broken contract
                refused.append(f"{param}={value!r} ({e})")
                continue
            check_on_other_layouts(kind, name, built, structured, refusals=True)
        except Exception as e:
            raise AssertionError(f"{kind} {name!r} with {param}={value!r}: {type(e).__name__}: {e}") from e
        tried.append(f"{param}={value!r}")
    if not tried and not refused:
        return f"{kind} {name!r}: no fraction or flag parameters to vary"
    line = f"{kind} {name!r} with {', '.join(tried) or 'no other value'}: within the contract, same seed, same output"
    return line + (f"; refused: {'; '.join(refused)}" if refused else "")


def check_plugin(
    name: str, kind: Optional[str] = None, recipe: str = "mae_image_tiny", params: tuple[str, ...] = (), samples: int = 6
) -> list[str]:
    """Check component ``name`` in ``recipe``; returns report lines, raises on the first broken contract."""
    from omnimask.core.collate import recipe_collate
    from omnimask.train.pretrain import check_recipe

    kind = find_kind(name, kind)
    slot = SLOTS[kind]
    if kind == "modality":  # its parameters are the augmentation's
        cfg = load_recipe(recipe, [f"modality={name}", *(f"data.augment.{p}" for p in params)])
    else:
        cfg = load_recipe(recipe, [f"{slot}={{name: '{name}'}}", *(f"{slot}.{p}" for p in params)])
    built = check_recipe(cfg)
    report = [f"{kind} {name!r} in recipe {recipe} ({cfg.modality}): config OK"]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = generated_samples(cfg.modality, samples, Path(tmp))
    outs = pipeline_outputs(kind, name, built, inputs)
    layout = built.tokenizer.layout
    batch = recipe_collate(built)(outs)
    hidden = (batch["mask"] & batch["valid"] if "valid" in batch else batch["mask"]).sum(dim=1).tolist()
    masked = "batch masked as a whole" if built.masker.batch_level else "masked"
    report.append(
        f"loader: {len(outs)} generated samples tokenized, {masked} and targeted within the contract "
        f"(layout {layout.grid} x {layout.token_dim}; hidden per sample {hidden}); same seed, same output"
    )
    if kind in ("masker", "target") and not built.tokenizer.variable_length:
        structured = bool({"coords", "edges"} & set(outs[0]))
        report.append(check_on_other_layouts(kind, name, built, structured))
        report.append(check_other_values(kind, name, cfg, inputs, structured))
    model = built.build_model()
    loss = model.loss(batch)
    if not math.isfinite(float(loss.detach())):
        raise AssertionError(f"{kind} {name!r}: the loss of the generated batch is {float(loss.detach())}")
    loss.backward()
    report.append(f"model: forward and backward on a batch of {len(outs)}, loss {float(loss.detach()):.4f}")
    return report


def run(args: Any) -> int:
    from omnimask.core.contracts import ContractError

    try:
        lines = check_plugin(args.name, args.kind, args.recipe, tuple(args.param), args.samples)
    except (ContractError, ConfigError, AssertionError) as e:
        print(f"check-plugin FAILED: {e}")
        return 1
    print("\n".join(lines))
    print("check-plugin OK")
    return 0
