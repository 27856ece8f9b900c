"""``omnimask check-plugin NAME``: a component run against its contract on generated input.

The component takes its slot in a recipe (the masker slot for a masker, ...), the
recipe's modality demo writes a few real input files, they are ingested and run
through the loader pipeline (every output checked by :mod:`omnimask.core.contracts`,
twice, to see that the same seed gives the same result), batched, and the model
takes one forward and backward pass on the batch.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from omnimask.core import registry
from omnimask.core.config import ConfigError, load_recipe
from omnimask.core.interfaces import QuarantineError

SLOTS = {"tokenizer": "model.tokenizer", "masker": "model.masker", "target": "model.target", "encoder": "model.encoder",
         "head": "model.head"}


def find_kind(name: str, kind: Optional[str]) -> str:
    """The kind of component ``name`` is (given, or the one registry that holds it)."""
    if kind is not None:
        if kind not in SLOTS:
            raise ConfigError("kind", f"check-plugin checks {sorted(SLOTS)}; a modality is checked through a recipe that uses it")
        return kind
    if ":" in name:
        raise ConfigError("kind", f"{name!r} is a dotted path: say which kind it is with --kind")
    kinds = [k for k in SLOTS if name in registry.available(k)]
    if len(kinds) != 1:
        raise ConfigError("kind", f"{name!r} is {'registered as ' + ' and '.join(kinds) if kinds else 'not registered'}"
                                  f"; say which kind with --kind (omnimask plugins lists them)")
    return kinds[0]


def generated_samples(modality: str, count: int, workdir: Path) -> list[tuple[str, dict[str, bytes]]]:
    """``count`` or so real samples of ``modality`` (``(key, members)``), from its example input files
    (:meth:`~omnimask.core.interfaces.Modality.example_inputs`), ingested in this process (no Ray): what a shard
    would hold."""
    from omnimask.data.sources import list_inputs

    mod = registry.lookup("modality", modality)()
    try:
        mod.example_inputs(workdir, count)
    except NotImplementedError as e:
        raise ConfigError("modality", f"{e}: check-plugin runs components on a modality's example inputs") from None
    samples = []
    for item in list_inputs(workdir, mod.is_dataset_folder):
        try:
            for _, result in mod.encode_records(Path(item.path), mod.IngestConfig()):
                if not isinstance(result, QuarantineError):
                    members = {result.ext: result.payload, "json": json.dumps(result.meta).encode()}
                    samples.append((f"{len(samples):09d}", members))
        except QuarantineError:
            continue  # the demos write a few broken files on purpose
        if len(samples) >= count:
            break
    return samples[:count]


def check_plugin(name: str, kind: Optional[str] = None, recipe: str = "mae_image_tiny", params: tuple[str, ...] = (),
                 samples: int = 6) -> list[str]:
    """Check component ``name`` in ``recipe``; returns report lines, raises on the first broken contract."""
    from omnimask.train.pretrain import check_recipe
    from omnimask.core.collate import recipe_collate
    from omnimask.data.loader import SamplePipeline

    kind = find_kind(name, kind)
    slot = SLOTS[kind]
    cfg = load_recipe(recipe, [f"{slot}={{name: '{name}'}}", *(f"{slot}.{p}" for p in params)])
    built = check_recipe(cfg)
    report = [f"{kind} {name!r} in recipe {recipe} ({cfg.modality}): config OK"]
    with tempfile.TemporaryDirectory() as tmp:
        inputs = generated_samples(cfg.modality, samples, Path(tmp))
    pipeline = SamplePipeline(built, seed=0, strict=True)
    outs = [pipeline(key, members, 0) for key, members in inputs]
    again = [pipeline(key, members, 0) for key, members in inputs[:2]]
    for a, b in zip(outs, again):
        for field in sorted(set(a) & {"tokens", "mask", "target", "queries", "coords", "edges", "mask_token"}):
            if not torch.equal(torch.as_tensor(a[field]), torch.as_tensor(b[field])):
                raise AssertionError(f"{kind} {name!r}: the same sample and seed gave a different {field}: not deterministic")
    layout = built.tokenizer.layout
    batch = recipe_collate(built)(outs)
    hidden = (batch["mask"] & batch["valid"] if "valid" in batch else batch["mask"]).sum(dim=1).tolist()
    masked = "batch masked as a whole" if built.masker.batch_level else "masked"
    report.append(f"loader: {len(outs)} generated samples tokenized, {masked} and targeted within the contract "
                  f"(layout {layout.grid} x {layout.token_dim}; hidden per sample {hidden}); same seed, same output")
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
