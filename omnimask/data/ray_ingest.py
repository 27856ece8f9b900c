"""``data.loader: ray``: samples decoded, tokenized, masked and targeted by Ray Data tasks.

The driver builds one streaming dataset for the whole run::

    (epoch, window) rows        epochs x windows of ``data.shuffle_window`` shards, in the torch
                                loader's seeded shard order (:func:`window_units`)
      -> flat_map(read window)  one row per sample (key, ext, data, json, epoch), the window's
                                samples in the torch loader's seeded order, read one at a time
      -> map_batches(pipeline)  CPU tasks anywhere in the cluster: tokens, mask, target (numpy)

and hands it to the TorchTrainer; each worker reads its share through
``ray.train.get_dataset_shard("train")`` (Ray Data's ``streaming_split``, equal
sizes). The preprocessing CPUs need not be on the training nodes. Rows are
pipeline outputs (variable-length ones as Ray's variable-shaped tensors), and the
workers batch them with the torch loader's :func:`omnimask.core.collate.collate`.

Crops and masks are seeded by ``(seed, epoch, key)`` as in the torch loader, and
samples are shuffled as there: a window's shards are read together and their
samples permuted (shards are written from sorted inputs, so a shard often holds
one class: without the window a batch would too). The order in which a worker
receives the windows' batches depends on Ray Data's scheduling, so a resume
continues after the same number of batches, not the same samples. The shards'
sizes are checked on the driver before the run, and with ``data.verify_shards``
each read task checks its shards' sha256 (every epoch: a task is not a process
that keeps what it checked). The torch loader's ``num_workers``,
``prefetch_factor`` and ``pin_memory`` do not apply here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from omnimask.core.collate import collate
from omnimask.core.config import RecipeConfig, from_dict, to_dict
from omnimask.data.loader import replace_failures
from omnimask.data.order import FollowsTraining, check_resume, shard_windows, window_order
from omnimask.io.formats import ShardFile
from omnimask.io.manifest import Manifest, ShardInfo, check_shard_digest, check_shard_sizes

log = logging.getLogger(__name__)


def build_ray_dataset(cfg: RecipeConfig, world_size: int) -> Any:
    """The run's streaming dataset: enough epochs for ``trainer.max_steps`` on ``world_size`` ranks."""
    import ray.data

    root = Path(cfg.data.path).resolve()  # type: ignore[arg-type]  # checked non-None by pretrain.check_dataset
    manifest = Manifest.load(root)
    if not manifest.num_samples:
        raise ValueError(manifest.no_samples(root))
    check_shard_sizes(root, manifest)
    needed = cfg.trainer.max_steps * cfg.data.batch_size * world_size
    epochs = math.ceil(needed / manifest.num_samples) + 1
    recipe_json = json.dumps(to_dict(cfg))
    units = [u for epoch in range(epochs) for u in window_units(cfg, root, manifest, epoch)]
    return (
        ray.data.from_items(units, override_num_blocks=len(units))
        .flat_map(read_window_rows)
        .map_batches(
            run_pipeline,
            fn_kwargs={"recipe_json": recipe_json},
            batch_size=cfg.data.batch_size,
            batch_format="numpy",
            num_cpus=1,
        )
    )


def window_units(cfg: RecipeConfig, root: Path, manifest: Manifest, epoch: int) -> list[dict[str, Any]]:
    """The read tasks of ``epoch``: one per window of ``data.shuffle_window`` shards, in the torch loader's order."""
    units = []
    for w, shards in enumerate(shard_windows(cfg.seed, epoch, len(manifest.shards), cfg.data.shuffle_window)):
        infos = [manifest.shards[i] for i in shards]
        units.append(
            {
                "epoch": epoch,
                "window": w,
                "seed": cfg.seed,
                "format": manifest.format,
                "root": str(root),
                "shards": [dataclasses.asdict(info) for info in infos],
                "verify": cfg.data.verify_shards,
            }
        )
    return units


def read_window_rows(unit: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per sample of a window's shards (``key, ext, data, json, epoch, shard``), in the window's seeded
    order: the torch loader's order of those samples (:func:`~omnimask.data.order.window_order`). Samples
    are read one at a time, by random access, as they are emitted. A sample without a payload member gets an
    empty one: its decoding fails and the pipeline replaces it, as the torch loader's does."""
    root, infos = Path(unit["root"]), [ShardInfo(**info) for info in unit["shards"]]
    if unit["verify"]:  # data.verify_shards: each read hashes its shards
        for info in infos:
            check_shard_digest(root, info)
    files = [ShardFile(unit["format"], root / info.path) for info in infos]
    for i, j in window_order([info.num_samples for info in infos], unit["seed"], unit["epoch"], unit["window"]):
        key, members = files[i][int(j)]
        ext = next((e for e in members if e != "json"), "")
        yield {
            "key": key,
            "ext": ext,
            "data": members.get(ext, b""),
            "json": members.get("json", b"{}"),
            "epoch": unit["epoch"],
            "shard": infos[i].path,
        }


@functools.lru_cache(maxsize=4)
def _pipeline(recipe_json: str) -> Any:
    from omnimask.core.recipe import Recipe
    from omnimask.data.loader import SamplePipeline

    cfg = from_dict(RecipeConfig, json.loads(recipe_json))
    return SamplePipeline(Recipe.from_config(cfg), cfg.seed, cfg.data.strict)


def run_pipeline(batch: dict[str, np.ndarray], recipe_json: str) -> dict[str, np.ndarray]:
    """Ray Data map_batches function: raw samples -> pipeline outputs (tokens, masks, compact targets, keys)."""
    pipeline = _pipeline(recipe_json)
    rows = zip(batch["key"], batch["ext"], batch["data"], batch["json"], batch["epoch"], batch["shard"])
    out = list(
        replace_failures(
            pipeline.try_call(str(key), {str(ext): bytes(data), "json": bytes(meta)}, int(epoch), str(shard))
            for key, ext, data, meta, epoch, shard in rows
        )
    )
    columns = sorted(set(out[0]) - {"key", "replaced"})
    return {
        "replaced": np.array([o["replaced"] for o in out]),
        "key": np.array([o["key"] for o in out]),
        **{c: column([np.asarray(o[c]) for o in out]) for c in columns},
    }


def column(arrays: list[np.ndarray]) -> np.ndarray:
    """Stacked when the shapes agree, else an object array of the arrays (a variable-shaped tensor column)."""
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


class RayShardBatches(FollowsTraining):
    """Batches from a worker's dataset shard, in the torch loader's layout.

    Its position is a count of batches: Ray Data decides which windows a rank receives, so a resume continues
    with as many samples trained in total, not with the same ones (docs/ARCHITECTURE.md)."""

    def __init__(
        self,
        shard: Any,
        batch_size: int,
        *,
        world_size: int = 1,
        seed: int = 0,
        prefetch_batches: int = 2,
        collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate,
    ):
        self.shard, self.batch_size, self.collate = shard, batch_size, collate_fn
        self.world_size, self.seed, self.prefetch_batches = world_size, seed, prefetch_batches
        self.resume_batches = 0
        """Batches of this rank's shard skipped after a resume."""

    def layout(self) -> dict[str, Any]:
        return {"loader": "ray", "world_size": self.world_size, "batch_size": self.batch_size, "max_tokens": None, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        """The layout; the position is the trained step count, which the checkpoint holds."""
        return self.layout()

    def load_state_dict(self, state: dict[str, Any], step: Optional[int] = None) -> None:
        """Skip as many batches as make up the samples of ``step`` trained steps of the saved layout (any world
        or batch size); a torch-loader state or another seed is refused with the reason."""
        check_resume(state, self.layout())
        step = step if step is not None else self.trained_steps()
        self.start_step = step
        samples = step * state.get("world_size", self.world_size) * state.get("batch_size", self.batch_size)
        self.resume_batches = samples // (self.world_size * self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = self.shard.iter_batches(
            batch_size=self.batch_size, batch_format="numpy", drop_last=True, prefetch_batches=self.prefetch_batches
        )
        for i, b in enumerate(batches):
            if i < self.resume_batches:
                continue
            columns = [c for c in b if c not in ("key", "replaced")]
            samples = [
                {"key": str(k), "replaced": bool(r), **{c: torch.from_numpy(np.asarray(b[c][j])) for c in columns}}
                for j, (k, r) in enumerate(zip(b["key"], b["replaced"]))
            ]
            yield self.collate(samples)
