"""A pretraining run on Ray Train: the driver side.

``pretrain()`` joins (``--ray-address``/``RAY_ADDRESS``) or starts Ray, then runs
:func:`omnimask.train.worker.train_loop` in a ``TorchTrainer`` with
``scaling.num_workers`` workers (one DDP rank each; one worker is still a Ray
Train run). Ray Train persists checkpoints to ``run.storage`` (default
``run.dir``) under the run's name, restarts failed workers from the latest one
up to ``run.max_failures`` times, and continues the run from it on ``--resume``.
The run's folder and its files: :class:`omnimask.core.run_dir.RunDir`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from omnimask.core.config import ConfigError, RecipeConfig, builtin_recipes, drop_removed_keys, load_recipe, to_dict
from omnimask.core.recipe import Recipe, describe_components
from omnimask.core.run_dir import RunDir
from omnimask.data.ray_env import ray_session
from omnimask.data.scratch import run_scratch
from omnimask.io.manifest import MANIFEST, Manifest
from omnimask.train.failure import TrainingFailed, describe, training_failed
from omnimask.weights import check_init

log = logging.getLogger("omnimask.train")


class RunExistsError(FileExistsError):
    """A run of that name exists and neither ``--resume`` nor a new name was given."""

    pass


@dataclass
class RunResult:
    """What a finished run reports: its directory, steps, time, first and last loss, and ``summary.json``."""

    run_dir: Path
    steps: int
    first_loss: Optional[float]
    last_loss: Optional[float]
    seconds: float
    summary: dict


def run_name(cfg: RecipeConfig, name: Optional[str] = None) -> str:
    return name or cfg.run.name or time.strftime("%Y%m%d-%H%M%S")


def config_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs between two config dicts."""
    out = []
    for key in sorted(set(before) | set(after), key=str):
        old, new, path = before.get(key), after.get(key), f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            out += config_changes(old, new, f"{path}.")
        elif old != new:  # to_dict writes tuples as lists, as the saved YAML reads back
            out.append(f"{path}: {old!r} -> {new!r}")
    return out


def warn_config_changes(saved: dict[str, Any], now: dict[str, Any], name: str) -> None:
    """Say which keys of a resumed run's config differ from its saved ``config.yaml``: the overrides given to
    :func:`resumed_config`, or anything a caller of :func:`pretrain` changed."""
    changes = config_changes(saved, now)
    if changes:
        log.warning("resuming run %s with a config that differs from the one it was started with: %s", name, "; ".join(changes))


def resumed_config(cfg: RecipeConfig, name: Optional[str], overrides: list[str]) -> RecipeConfig:
    """What ``--resume`` runs: the run's saved ``config.yaml`` with ``overrides`` (those given now) on top, so that
    a key not given again keeps the run's value. ``cfg``, the recipe with the same overrides, locates the run; a
    run that does not exist is left to :func:`pretrain` to report."""
    check_resume_name(cfg, name, True)
    saved = RunDir(Path(cfg.run.dir).resolve() / run_name(cfg, name)).config
    if not saved.is_file():
        return cfg
    resumed = load_recipe(saved, overrides)
    resumed.run.dir, resumed.run.name = cfg.run.dir, cfg.run.name  # where the run was found, wherever it was saved
    return resumed


def check_resume_name(cfg: RecipeConfig, name: Optional[str], resume: bool) -> None:
    if resume and not (name or cfg.run.name):
        raise ConfigError("run.name", "a resume continues a named run: give its name (--name or run.name)")


def check_dataset(cfg: RecipeConfig) -> Path:
    """``data.path``, resolved, once it is known to hold samples of the recipe's modality: a wrong path fails
    here, before Ray starts or the run's folder is made, not in every worker after a minute."""
    if not cfg.data.path:
        raise ConfigError("data.path", "not set: pass data.path=DIR (a directory written by `omnimask preprocess`)")
    data_path = Path(cfg.data.path).resolve()
    if not (data_path / MANIFEST).is_file():
        raise FileNotFoundError(f"data.path {data_path} holds no {MANIFEST}: run `omnimask preprocess` first")
    manifest = Manifest.load(data_path)
    if manifest.modality != cfg.modality:
        recipes = ", ".join(builtin_recipes(manifest.modality)) or "none built in"
        raise ConfigError(
            "data.path",
            f"{data_path} holds {manifest.modality} samples; the recipe is for {cfg.modality}. "
            f"Recipes for {manifest.modality}: {recipes}; or pass another data.path",
        )
    if manifest.num_samples == 0:
        raise ConfigError("data.path", manifest.no_samples(data_path))
    return data_path


def failed_before_checkpoint(run: RunDir, cfg: RecipeConfig) -> bool:
    """Whether the run failed without a summary or a checkpoint (:meth:`RunDir.failed_before_checkpoint`), so that
    starting it again loses nothing (a config error in a worker, a dataset that failed to load). A run still going
    has no mark, and one killed outright leaves none: both stay refused. Only where the checkpoints are kept in
    the run's folder (no ``run.storage``): elsewhere this cannot be told cheaply."""
    return cfg.run.storage is None and run.failed_before_checkpoint()


def prepare_run_dir(cfg: RecipeConfig, name: str, resume: bool) -> Path:
    """The run's folder, ``run.dir/NAME``, checked against ``resume`` and holding the run's ``config.yaml``. A run of
    that name that failed before its first checkpoint is moved aside to ``NAME.failed-TIME`` and started again."""
    run_dir = Path(cfg.run.dir).resolve() / name
    run = RunDir(run_dir)
    if run.config.exists() and not resume:
        if not failed_before_checkpoint(run, cfg):
            raise RunExistsError(f"run {name!r} already exists at {run_dir}: pass --resume to continue it, or another --name")
        aside = run_dir.with_name(f"{name}.failed-{time.strftime('%Y%m%d-%H%M%S')}")
        while aside.exists():  # a second failed start within the same second
            aside = aside.with_name(aside.name + "+")
        run_dir.rename(aside)
        log.warning("run %r failed before its first checkpoint: starting it again (the earlier attempt's files are in %s)", name, aside)
    if resume and not run.config.exists():
        raise FileNotFoundError(f"nothing to resume: no run {name!r} at {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        saved = drop_removed_keys(yaml.safe_load(run.config.read_text()) or {})
        warn_config_changes(saved, to_dict(cfg), name)
    run.config.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    run.clear_call_marks()
    return run_dir


def check_recipe(cfg: RecipeConfig) -> Recipe:
    """Every config error of a run, before any job starts: :meth:`Recipe.check` and ``model.init``'s file."""
    recipe = Recipe.check(cfg)
    if cfg.model.init is not None:
        check_init(recipe)
    return recipe


def pretrain(cfg: RecipeConfig, name: Optional[str] = None, resume: bool = False, ray_address: Optional[str] = None) -> RunResult:
    """Train ``cfg`` on Ray Train; returns the run directory and its summary. A call that fails marks the run
    (:attr:`RunDir.failed_mark`)."""
    check_resume_name(cfg, name, resume)
    cfg.data.path = str(check_dataset(cfg))
    check_recipe(cfg)  # config errors fail here, not in every worker
    name = run_name(cfg, name)
    log.info("run %s: %s", name, describe_components(cfg))
    run_dir = prepare_run_dir(cfg, name, resume)
    started = time.perf_counter()
    try:
        checkpoint = fit(cfg, name, run_dir, ray_address)
    except BaseException as e:
        RunDir(run_dir).mark_failed(*describe(e))
        if isinstance(e, TrainingFailed):
            e.run_dir = run_dir
        raise
    summary = RunDir(run_dir).read_summary()
    if summary is None:
        raise FileNotFoundError(
            f"the run ended but its rank 0 left no {RunDir(run_dir).summary}: on a cluster, rank 0 "
            "writes the run directory on its own node, so run.dir must be a path every node shares"
        )
    log.info("run %s finished: %d steps, latest checkpoint %s", name, summary["steps"], checkpoint)
    return RunResult(run_dir, summary["steps"], summary["first_loss"], summary["last_loss"], time.perf_counter() - started, summary)


def fit(cfg: RecipeConfig, name: str, run_dir: Path, ray_address: Optional[str]) -> Optional[str]:
    """Run the TorchTrainer of :func:`omnimask.train.worker.train_loop` on Ray; returns the path of the
    latest checkpoint."""
    with run_scratch() as scratch, ray_session(ray_address):  # the scratch folder goes after the workers
        import ray
        import ray.train

        from omnimask.train.ray_trainer import Trainer
        from omnimask.train.worker import train_loop

        s = cfg.scaling
        use_gpu = s.use_gpu if s.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
        datasets = {}
        if cfg.data.loader == "ray":
            from omnimask.data.ray_ingest import build_ray_dataset

            datasets["train"] = build_ray_dataset(cfg, s.num_workers)
        trainer = Trainer(
            train_loop,
            datasets=datasets or None,
            train_loop_config={"recipe": to_dict(cfg), "run_dir": str(run_dir), "use_gpu": use_gpu, "scratch": str(scratch)},
            scaling_config=ray.train.ScalingConfig(
                num_workers=s.num_workers,
                use_gpu=use_gpu,
                resources_per_worker={"CPU": s.cpus_per_worker, **s.resources_per_worker},
            ),
            run_config=ray.train.RunConfig(
                name=name,
                storage_path=cfg.run.storage or str(Path(cfg.run.dir).resolve()),
                failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.trainer.keep_checkpoints),
            ),
        )
        try:
            result = trainer.fit()
            if result.error is not None:
                raise result.error
        except Exception as e:
            failed = training_failed(e)  # the worker's own error, first
            if failed is e:
                raise
            raise failed from e
        return result.checkpoint.path if result.checkpoint else None
