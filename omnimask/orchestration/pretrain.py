"""A pretraining run: run directory, loader, Lightning trainer, checkpoints, metrics.

Run directory layout (``runs/NAME/`` by default)::

    config.yaml            the resolved recipe
    checkpoints/           step=NNNNNNN.ckpt every trainer.checkpoint_every_n_steps, and last.ckpt
    metrics.csv            per-step metrics (train/loss, train/lr)
    tensorboard/           the same metrics for TensorBoard
    reconstruction.png     original | masked | reconstruction for a few samples
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from omnimask.config import ConfigError, RecipeConfig, to_dict
from omnimask.models.module import MaskedModelingModule
from omnimask.models.recipe import Recipe
from omnimask.orchestration.callbacks import ProgressLog, ReconstructionPreview
from omnimask.pipelines.loader import build_loader

log = logging.getLogger("omnimask.train")


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    first_loss: Optional[float]
    last_loss: Optional[float]
    seconds: float


def run_dir_for(cfg: RecipeConfig, name: Optional[str] = None) -> Path:
    name = name or cfg.run.name or time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.run.dir) / name


def resolve_precision(cfg: RecipeConfig, accelerator: str) -> str:
    if cfg.trainer.precision != "auto":
        return cfg.trainer.precision
    return "bf16-mixed" if accelerator == "gpu" else "32-true"


def pretrain(cfg: RecipeConfig, name: Optional[str] = None) -> RunResult:
    """Train ``cfg`` in this process; returns where the run went and its first/last loss."""
    if not cfg.data.path:
        raise ConfigError("data.path", "not set: pass data.path=DIR (a directory written by `omnimask preprocess`)")
    run_dir = run_dir_for(cfg, name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    pl.seed_everything(cfg.seed, workers=False, verbose=False)

    accelerator = cfg.trainer.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    recipe = Recipe.from_config(cfg)
    loader = build_loader(
        recipe,
        cfg.data.path,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        seed=cfg.seed,
        shuffle_buffer=cfg.data.shuffle_buffer,
        prefetch_factor=cfg.data.prefetch_factor,
        pin_memory=cfg.data.pin_memory and accelerator == "gpu",
    )
    module = MaskedModelingModule(recipe, global_batch_size=cfg.data.batch_size)
    progress = ProgressLog(cfg.trainer.log_every_n_steps, cfg.data.batch_size)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="step={step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.trainer.checkpoint_every_n_steps,
        save_top_k=cfg.trainer.keep_checkpoints,
        monitor="step",
        mode="max",
        save_last=True,
    )
    trainer = pl.Trainer(
        max_steps=cfg.trainer.max_steps,
        accelerator=accelerator,
        devices=1,
        precision=resolve_precision(cfg, accelerator),  # type: ignore[arg-type]
        logger=[
            CSVLogger(run_dir, name="", version=""),
            TensorBoardLogger(run_dir, name="", version="tensorboard", default_hp_metric=False),
        ],
        callbacks=[progress, checkpoints, ReconstructionPreview(run_dir / "reconstruction.png", cfg.trainer.preview_samples)],
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        gradient_clip_val=cfg.optim.grad_clip,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run_dir,
    )
    n_params = sum(p.numel() for p in module.model.parameters())
    log.info(
        "run %s: %s on %s, %.1fM parameters, lr %.2e, %d steps of %d samples",
        run_dir, cfg.description or cfg.modality, accelerator, n_params / 1e6, module.base_lr, cfg.trainer.max_steps, cfg.data.batch_size,
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return RunResult(run_dir, trainer.global_step, progress.first_loss, progress.last_loss, time.perf_counter() - started)
