"""The one LightningModule every recipe trains with."""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch

from omnimask.core.collate import model_inputs
from omnimask.core.recipe import Recipe, check_batch_parts
from omnimask.train.batch_parts import BatchParts
from omnimask.train.schedule import param_groups, warmup_cosine

log = logging.getLogger(__name__)


class MaskedModelingModule(pl.LightningModule):
    """Trains a recipe's :class:`MaskedModel` on batches from :func:`omnimask.data.loader.collate`.

    The learning rate is ``optim.lr`` or ``optim.blr * global_batch_size / 256``
    (MAE), with linear warm-up and half-cycle cosine decay per step. No launch
    logic lives here: the same module runs in one process or under Ray Train.
    """

    def __init__(self, recipe: Recipe, global_batch_size: int, data_state: Optional[Callable[[], dict[str, Any]]] = None):
        super().__init__()
        self.recipe = recipe
        self.data_state = data_state
        """The loader's ``state_dict`` (its layout and position after the trained steps), kept in checkpoints."""
        self.model = recipe.build_model()
        self.init_report = None
        if recipe.config.model.init is not None:
            from omnimask.weights import load_init

            self.init_report = load_init(self.model, recipe, recipe.config.model.init)
        optim = recipe.config.optim
        self.base_lr = optim.lr if optim.lr is not None else optim.blr * global_batch_size / 256
        self.global_batch_size = global_batch_size
        self.replaced = 0
        """Samples of this rank replaced because they failed to decode (since this process started)."""
        trainer = recipe.config.trainer
        self.compute_loss = torch.compile(self.model.loss) if trainer.compile else self.model.loss
        """``model.loss``, compiled with ``trainer.compile`` (the weights stay ``self.model``'s)."""
        if trainer.cpu_batch_parts > 1:
            check_batch_parts(recipe, type(self.model.loss_fn))
        self.batch_parts = BatchParts(trainer.cpu_batch_parts if not trainer.compile else 1)
        """``trainer.cpu_batch_parts``: on the CPU, the loss of a batch's parts at once."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.batch_parts(self.compute_loss, model_inputs(batch), self.model.parameters())
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=batch["tokens"].shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, batch_size=1)
        self.replaced += batch.get("replaced", 0)
        self.log("data/replaced_samples", float(self.replaced), on_step=True, batch_size=1)
        return loss

    def on_fit_start(self) -> None:
        if self.init_report is not None and self.global_rank == 0 and self.trainer.ckpt_path is None:
            log.info(self.init_report.summary())  # a resumed run continues from its checkpoint instead

    def teardown(self, stage: str) -> None:
        self.batch_parts.close()  # its threads, if it started any

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep what the loader says of its position beside the step (``omnimask_data``): the worker hands it
        back to the loader on resume, and ``omnimask`` tools read it without Lightning's loop state."""
        if self.data_state is not None:
            checkpoint["omnimask_data"] = self.data_state()

    def fused_optimizer(self) -> bool:
        """AdamW's fused kernel (one kernel for all parameters instead of a dozen per tensor, ``python -m
        benchmarks.micro`` compares them) where it applies: fp32 parameters on the CPU or a GPU, and no
        fp16 gradient scaler (Lightning cannot clip gradients that the fused step unscales itself)."""
        params = list(self.model.parameters())
        return self.recipe.config.trainer.precision != "16-mixed" and all(
            p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params
        )

    def configure_optimizers(self) -> Any:
        optim = self.recipe.config.optim
        total = self.recipe.config.trainer.max_steps
        opt = torch.optim.AdamW(
            param_groups(self.model, optim.weight_decay), lr=self.base_lr, betas=optim.betas, fused=self.fused_optimizer()
        )
        scale = lambda step: warmup_cosine(step, 1.0, optim.warmup_steps, total, optim.min_lr / self.base_lr)  # noqa: E731  (a one-line schedule reads better inline)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, scale)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
