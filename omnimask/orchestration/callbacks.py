"""Training callbacks: progress lines with rate and ETA, the reconstruction preview."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torchvision.utils import save_image

from omnimask.models.preview import reconstruction_grid

log = logging.getLogger("omnimask.train")


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressLog(pl.Callback):
    """Logs ``step, loss, lr, steps/s, samples/s, ETA`` every ``every`` steps."""

    def __init__(self, every: int, batch_size: int):
        self.every, self.batch_size = every, batch_size
        self.first_loss: Optional[float] = None
        self.last_loss: Optional[float] = None
        self._t0 = self._t_last = 0.0
        self._step_last = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = self._t_last = time.perf_counter()
        self._step_last = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
        if self.first_loss is None:
            self.first_loss = loss
        self.last_loss = loss
        if step % self.every and step != trainer.max_steps:
            return
        now = time.perf_counter()
        rate = (step - self._step_last) / max(now - self._t_last, 1e-9)
        self._t_last, self._step_last = now, step
        eta = (trainer.max_steps - step) / max(rate, 1e-9)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        log.info(
            "step %d/%d  loss %.4f  lr %.2e  %.2f steps/s  %.0f samples/s  ETA %s",
            step, trainer.max_steps, loss, lr, rate, rate * self.batch_size, format_duration(eta),
        )


class ReconstructionPreview(pl.Callback):
    """Keeps ``num`` samples of the first batch; writes ``reconstruction.png`` when training ends."""

    def __init__(self, path: Path, num: int):
        self.path, self.num = Path(path), num
        self.batch: Optional[dict[str, Any]] = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.batch is None and self.num > 0:
            n = self.num
            self.batch = {
                "tokens": batch["tokens"][:n].detach().clone(),
                "mask": batch["mask"][:n].detach().clone(),
                "num_hidden": batch["num_hidden"],
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
        if grid.shape[-1] < 128:  # small images: enlarge (nearest) so the patches stay visible
            grid = torch.nn.functional.interpolate(grid, scale_factor=128 // grid.shape[-1] or 1, mode="nearest")
        save_image(grid, self.path, nrow=3, padding=2, pad_value=1.0)
        log.info("wrote the reconstruction preview (original | masked | reconstruction) to %s", self.path)
