"""Training callbacks: progress lines, the reconstruction preview, Ray Train reports and
checkpoints, the failure drill and the sample trace."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torchvision.utils import save_image

from omnimask.core.run_dir import CHECKPOINT_FILE, checkpoint_dir_name
from omnimask.train.preview import reconstruction_grid

log = logging.getLogger("omnimask.train")


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressLog(pl.Callback):
    """Logs ``step, loss, lr, steps/s, samples/s, ETA`` every ``every`` steps (and tokens/s for
    variable-length samples); rates count rank 0's batches times ``world_size``."""

    def __init__(self, every: int, world_size: int):
        self.every, self.world_size = every, world_size
        self.first_loss: Optional[float] = None
        self.last_loss: Optional[float] = None
        self._t_last = 0.0
        self._step_last = 0
        self._samples = self._tokens = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t_last = time.perf_counter()
        self._step_last = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        self._samples += len(batch["keys"])
        if "valid" in batch:  # counted by collate on the host: no device sync per step
            self._tokens += batch["num_valid"]
        step = trainer.global_step
        logging_step = step % self.every == 0 or step >= trainer.max_steps
        if self.first_loss is not None and not logging_step:
            return  # reading the loss forces a device sync: only on logged steps
        loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        if self.first_loss is None:
            self.first_loss = loss
        self.last_loss = loss
        if not logging_step:
            return
        now = time.perf_counter()
        elapsed = max(now - self._t_last, 1e-9)
        rate = (step - self._step_last) / elapsed
        samples, tokens = self._samples * self.world_size / elapsed, self._tokens * self.world_size / elapsed
        self._t_last, self._step_last, self._samples, self._tokens = now, step, 0, 0
        eta = (trainer.max_steps - step) / max(rate, 1e-9)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        log.info(
            "step %d/%d  loss %.4f  lr %.2e  %.2f steps/s  %.0f samples/s%s  ETA %s",
            step,
            trainer.max_steps,
            loss,
            lr,
            rate,
            samples,
            f"  {tokens:.0f} tokens/s" if tokens else "",
            format_duration(eta),
        )


class LogLastStep(pl.Callback):
    """Makes Lightning write the metrics row of the run's last step. It writes rows every
    ``log_every_n_steps`` steps, so a run whose length is not a multiple of that (and any run shorter
    than it) ended without its final loss in metrics.csv and TensorBoard. Lightning also writes a row
    on a step that asks to stop: the last step asks, and the run ends after it as it would anyway."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.max_steps > 0 and trainer.global_step == trainer.max_steps - 1:
            trainer.should_stop = True


class ReconstructionPreview(pl.Callback):
    """Keeps ``num`` samples of the first batch; writes ``reconstruction.png`` when training ends."""

    def __init__(self, path: Path, num: int):
        self.path, self.num = Path(path), num
        self.batch: Optional[dict[str, Any]] = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.batch is None and self.num > 0:
            n = self.num
            self.batch = {
                k: v[:n].detach().clone() if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()
                if k in ("tokens", "mask", "queries", "coords", "mask_token", "num_hidden", "num_queries", "num_predict")
            }

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.batch is None or not trainer.is_global_zero:
            return
        try:
            grid = reconstruction_grid(pl_module.model, self.batch)
        except NotImplementedError as e:
            log.info("no reconstruction preview for this recipe: %s", e)
            return
        grid = grid.float().cpu()
        height, width = grid.shape[-2:]
        if height < 128:  # small pictures: enlarge (nearest) so the patches stay visible
            grid = torch.nn.functional.interpolate(grid, scale_factor=128 // height or 1, mode="nearest")
        # original | masked | reconstruction side by side, or stacked when the pictures are wide
        save_image(grid, self.path, nrow=3 if width <= 2 * height else 1, padding=2, pad_value=1.0)
        log.info("wrote the reconstruction preview (original | masked | reconstruction) to %s", self.path)


class RayTrainReport(pl.Callback):
    """Reports a checkpoint, with the step's metrics, to Ray Train every ``ckpt_every`` steps and at the
    last step. Every rank calls ``ray.train.report`` at the same steps (it is a barrier); rank 0 hands
    over the Lightning checkpoint, which Ray Train persists to the run's storage as
    ``checkpoint-stepNNNNNNN/checkpoint.ckpt``. Metrics alone are not reported at the logging steps:
    each report waits for Ray Train's controller (about a second on Ray 2.60, which made a tiny run
    log-bound), and the run's metrics.csv, TensorBoard and progress lines already have them.

    Rank 0 writes each checkpoint into a local staging folder, made at its first checkpoint; the other
    ranks make none (Lightning writes on rank 0 only), so a worker that Ray ends when a run fails
    leaves no folder behind. :meth:`discard_staging` removes rank 0's."""

    def __init__(self, ckpt_every: int):
        self.ckpt_every = ckpt_every
        self.staging: Optional[Path] = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        import ray.train

        step = trainer.global_step
        if step % self.ckpt_every and step < trainer.max_steps:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["step"] = step
        if trainer.is_global_zero and self.staging is None:
            self.staging = Path(tempfile.mkdtemp(prefix="omnimask-ckpt-"))
        # the other ranks pass a path too: the call is collective, but only rank 0 writes
        tmp = (self.staging or Path("omnimask-ckpt-rank0-only")) / f"step{step:07d}"
        trainer.save_checkpoint(tmp / CHECKPOINT_FILE, weights_only=False)  # rank 0 writes, all ranks wait
        checkpoint = ray.train.Checkpoint.from_directory(tmp) if trainer.is_global_zero else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=checkpoint_dir_name(step))
        if trainer.is_global_zero:
            shutil.rmtree(tmp, ignore_errors=True)

    def discard_staging(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


class FailOnce(pl.Callback):
    """Fault-tolerance drill: rank 0 raises once at ``step`` (a marker file records that it did)."""

    def __init__(self, step: int, marker: Path):
        self.step, self.marker = step, Path(marker)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero and not self.marker.exists():
            self.marker.write_text(f"failure injected at step {self.step}\n")
            raise RuntimeError(f"injected failure at step {self.step} (trainer.fail_at_step)")


class SampleTrace(pl.Callback):
    """Writes one JSON line per sample consumed: ``{"step", "rank", "index", "key"}``."""

    def __init__(self, path: Path, rank: int):
        self.path, self.rank = Path(path), rank
        self._file = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        import json

        if self._file is None:
            self._file = open(self.path, "a")
        step = trainer.global_step
        self._file.write(
            "".join(json.dumps({"step": step, "rank": self.rank, "index": i, "key": k}) + "\n" for i, k in enumerate(batch["keys"]))
        )
        self._file.flush()  # a worker that dies keeps its trace up to the step it was on

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
