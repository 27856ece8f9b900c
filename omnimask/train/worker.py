"""The training loop each Ray Train worker runs (one DDP rank).

It rebuilds the recipe from the config, streams its rank's share of the shards,
and trains the shared :class:`MaskedModelingModule` with Lightning's DDP
strategy over Ray's process group. When Ray Train hands it a checkpoint (on
``--resume`` or after a worker failure) it restores model, optimizer,
scheduler and step from it, and the loader continues after the batches that
step had consumed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch

from omnimask.core.collate import recipe_collate
from omnimask.core.config import RecipeConfig, from_dict
from omnimask.core.logs import setup_logging
from omnimask.core.recipe import Recipe
from omnimask.core.run_dir import CHECKPOINT_FILE, RunDir
from omnimask.data.loader import build_loader
from omnimask.data.order import mean_displacement
from omnimask.data.ray_ingest import RayShardBatches
from omnimask.data.scratch import use_scratch
from omnimask.train.allocator import retain_freed_memory
from omnimask.train.callbacks import FailOnce, LogLastStep, ProgressLog, RayTrainReport, ReconstructionPreview, SampleTrace
from omnimask.train.module import MaskedModelingModule

log = logging.getLogger("omnimask.train")


def resolve_precision(cfg: RecipeConfig, accelerator: str) -> str:
    """``trainer.precision``, ``auto`` resolved (bf16 autocast on a GPU, fp32 on the CPU). Warns when bf16 is asked
    of a CPU without bf16 instructions (AVX512-BF16 or AMX), where each bf16 matrix product is emulated, an order
    of magnitude slower than fp32."""
    precision = cfg.trainer.precision if cfg.trainer.precision != "auto" else ("bf16-mixed" if accelerator == "gpu" else "32-true")
    if accelerator == "cpu" and precision.startswith("bf16") and not cpu_has_bf16():
        log.warning(
            "trainer.precision=%s on a CPU without AVX512-BF16 or AMX: bf16 matrix products are emulated there, "
            "many times slower than fp32; trainer.precision=32-true is faster on this machine",
            precision,
        )
    return precision


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX), as torch sees it."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over all parameters (float32 bytes, in name order): equal digests, equal weights."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def checkpoint_data_state(path: Path) -> dict[str, Any]:
    """The step and data layout stored in a Lightning checkpoint (loaded with ``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"step": int(state["global_step"]), **state.get("omnimask_data", {})}


def build_rank_loader(cfg: RecipeConfig, recipe: Recipe, *, rank: int, world: int, to_gpu: bool) -> Any:
    """This rank's loader of ``cfg.data``: the torch loader over the shards, or this rank's share of the Ray
    Data pipeline; either has ``state_dict``/``load_state_dict`` and ``follow`` (its position)."""
    import ray.train

    if cfg.data.loader == "ray":
        return RayShardBatches(
            ray.train.get_dataset_shard("train"), cfg.data.batch_size, world_size=world, seed=cfg.seed, collate_fn=recipe_collate(recipe)
        )
    return build_loader(recipe, data=cfg.data, seed=cfg.seed, rank=rank, world_size=world, to_gpu=to_gpu)


def train_loop(config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of the TorchTrainer: :func:`train_rank` with this rank's temporary files in the
    run's scratch folder (:mod:`omnimask.data.scratch`)."""
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    with use_scratch(Path(config["scratch"]), rank):
        train_rank(config)


def train_rank(config: dict[str, Any]) -> None:
    """One rank's run: restore, load, fit, and (rank 0) write ``summary.json``."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    setup_logging()
    cfg: RecipeConfig = from_dict(RecipeConfig, config["recipe"])
    retain_freed_memory(cfg.trainer.retain_freed_memory_mb)  # before the loader forks its workers
    run_dir = Path(config["run_dir"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    accelerator = "gpu" if config["use_gpu"] else "cpu"
    pl.seed_everything(cfg.seed, workers=False, verbose=False)

    ckpt_path: Optional[Path] = None
    saved: dict[str, Any] = {"step": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            local = Path(tempfile.mkdtemp(prefix="omnimask-restore-")) / CHECKPOINT_FILE
            local.write_bytes((Path(d) / CHECKPOINT_FILE).read_bytes())
        ckpt_path = local
        saved = checkpoint_data_state(local)
        if rank == 0:
            log.info(
                "resuming from %s at step %d (data epoch %s, offset %s)",
                checkpoint.path,
                saved["step"],
                saved.get("epoch"),
                saved.get("offset"),
            )

    run = RunDir(run_dir)
    start_mark = run.start_mark  # where this pretrain call started: its first attempt's step
    if rank == 0 and not start_mark.exists():
        start_mark.write_text(f"{saved['step']}\n")
    recipe = Recipe.from_config(cfg)
    loader = build_rank_loader(cfg, recipe, rank=rank, world=world, to_gpu=accelerator == "gpu")
    if checkpoint is not None:
        loader.load_state_dict(saved, step=saved["step"])  # refuses a resume the position cannot carry over to
    shuffle = None
    if cfg.data.loader == "torch":
        stream = loader.dataset.stream
        shuffle = mean_displacement(stream.counts, cfg.seed, stream.start.epoch, cfg.data.shuffle_window)
        if rank == 0:
            log.info(
                "epoch order: %d samples, windows of %d shards, mean displacement %.0f samples (%.0f%% of the epoch)",
                stream.epoch_len,
                cfg.data.shuffle_window,
                shuffle,
                100 * shuffle / max(1, stream.epoch_len),
            )
    module = MaskedModelingModule(recipe, global_batch_size=cfg.data.batch_size * world, data_state=loader.state_dict)
    progress = ProgressLog(cfg.trainer.log_every_n_steps, world)
    report = RayTrainReport(cfg.trainer.checkpoint_every_n_steps)
    callbacks: list[pl.Callback] = [
        progress,
        LogLastStep(),
        report,
        ReconstructionPreview(run.preview, cfg.trainer.preview_samples),
    ]
    if cfg.data.trace:
        callbacks.append(SampleTrace(run.trace(rank), rank))
    if cfg.trainer.fail_at_step is not None:
        callbacks.append(FailOnce(cfg.trainer.fail_at_step, run.injected_failure))
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    trainer = pl.Trainer(
        max_steps=cfg.trainer.max_steps,
        accelerator=accelerator,
        devices="auto",
        strategy=RayDDPStrategy(find_unused_parameters=False),
        plugins=[RayLightningEnvironment()],
        precision=resolve_precision(cfg, accelerator),  # type: ignore[arg-type]  # one of Lightning's precision names, typed str
        logger=[
            CSVLogger(run_dir, name="", version=""),
            TensorBoardLogger(run_dir, name="", version="tensorboard", default_hp_metric=False),
        ],
        callbacks=callbacks,
        log_every_n_steps=cfg.trainer.log_every_n_steps,  # and the last step (LogLastStep)
        gradient_clip_val=cfg.optim.grad_clip,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        default_root_dir=run_dir,
    )
    trainer = prepare_trainer(trainer)
    loader.follow(lambda: trainer.global_step)
    if rank == 0:
        n_params = sum(p.numel() for p in module.model.parameters())
        log.info(
            "run %s: %s, %d worker(s) on %s, %.1fM parameters, lr %.2e, %d steps of %d samples per rank",
            run_dir,
            cfg.description or cfg.modality,
            world,
            accelerator,
            n_params / 1e6,
            module.base_lr,
            cfg.trainer.max_steps,
            cfg.data.batch_size,
        )
    started = time.perf_counter()
    try:
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    finally:
        report.discard_staging()
        if ckpt_path is not None:
            shutil.rmtree(ckpt_path.parent, ignore_errors=True)
    digests = [None] * world
    torch.distributed.all_gather_object(digests, weights_digest(module.model))
    if rank == 0:
        summary = {
            "steps": trainer.global_step,
            "world_size": world,
            "first_loss": progress.first_loss,
            "last_loss": progress.last_loss,
            "seconds": round(time.perf_counter() - started, 3),
            "resumed_from_step": saved["step"] if checkpoint is not None else None,
            "started_at_step": int(start_mark.read_text()),
            "data_position": {k: v for k, v in loader.state_dict().items() if k in ("epoch", "offset")} or None,
            "shuffle_mean_displacement": shuffle,
            "weights_digest_per_rank": digests,
        }
        run.write_summary(summary)
        if len(set(digests)) != 1:
            log.error("ranks ended with different weights: %s", digests)
