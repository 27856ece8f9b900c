"""A CPU training step's batch computed as parts at once, each part on its own share of the cores.

On a CPU with few cores, a training step spreads every operation over all of them (torch's intra-op
threads). For a small model that scales poorly: the Python that dispatches each operation runs on one
core while the others wait, and small products and element-wise operations split unevenly. With
``trainer.cpu_batch_parts`` the batch is cut into groups of samples (:func:`split_grid_batch`); one thread
per part computes that part's loss and gradients with ``threads // parts`` intra-op threads, so one part's
dispatch overlaps another's arithmetic. On a 2-core VM with 2 parts the tiny MAE's and the tiny AudioMAE's
steps run faster; ViT-B MAE at batch 8, whose large products already keep the cores busy, runs slower, so it
is a recipe's choice, not a default (docs/performance-history.md, "A batch in parts at once").

The maths is the whole batch's. The loss must be the mean of equal per-sample terms
(:attr:`~omnimask.core.networks.Loss.is_sample_mean`) on a grid batch (same token counts in every
sample): then the batch's loss is the size-weighted mean of its parts' losses, and its gradients the
weighted sum of theirs (each part weights its loss by its share of the samples), added in part order, so
every run gives the same bits (against the whole batch
they differ by rounding). The step's autograd sees one operation whose backward hands out those
gradients: gradient clipping, accumulation and DDP's gradient hooks work as for the whole batch.
A loss that draws random numbers (dropout) would draw them from several threads at once: not
deterministic, so the built-in models draw none.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from omnimask.core.collate import split_grid_batch

LossFn = Callable[[dict[str, Any]], torch.Tensor]


class PartThreads:
    """``parts`` long-lived threads, each running its jobs with ``threads_each`` intra-op threads."""

    def __init__(self, parts: int, threads_each: int):
        self.parts, self.threads_each = parts, threads_each
        self._jobs: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(parts)]
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        main_threads = torch.get_num_threads()
        started = threading.Barrier(parts + 1)
        for i in range(parts):
            threading.Thread(target=self._serve, args=(i, started), name=f"omnimask-batch-part-{i}", daemon=True).start()
        started.wait()
        # torch.set_num_threads in a thread also sets the count that threads started later begin with
        torch.set_num_threads(main_threads)

    def _serve(self, i: int, started: threading.Barrier) -> None:
        # a thread takes its count from the process-wide one at its first parallel call, which would undo
        # set_num_threads once the caller restores that: make the first call before
        torch.get_num_threads()
        torch.set_num_threads(self.threads_each)
        started.wait()
        while (job := self._jobs[i].get()) is not None:
            fn, arg = job
            try:
                self._done.put((i, fn(arg), None))
            except BaseException as e:  # handed to the caller, who raises it
                self._done.put((i, None, e))

    def map(self, fn: Callable[[Any], Any], args: Sequence[Any]) -> list[Any]:
        """``[fn(a) for a in args]``, ``args[i]`` on thread ``i``, all at once; the first error is raised."""
        if len(args) > self.parts:
            raise ValueError(f"{len(args)} jobs for {self.parts} threads")
        for i, arg in enumerate(args):
            self._jobs[i].put((fn, arg))
        results: list[Any] = [None] * len(args)
        error: Optional[BaseException] = None
        for _ in args:
            i, out, e = self._done.get()
            results[i], error = out, error or e
        if error is not None:
            raise error
        return results

    def close(self) -> None:
        for jobs in self._jobs:
            jobs.put(None)


class _Gradients(torch.autograd.Function):
    """``loss`` (already computed) as the output of an operation on ``params`` whose backward returns
    ``grads`` scaled by the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, loss: torch.Tensor, grads: list[Optional[torch.Tensor]], *params: torch.Tensor) -> torch.Tensor:
        ctx.grads = grads
        return loss.clone()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Optional[torch.Tensor], ...]:
        grads, ctx.grads = ctx.grads, None  # no reference kept: the parameters take these tensors as their .grad
        if grads is None:
            raise RuntimeError("the batch parts' gradients were handed out already: one backward per step")
        if not bool(grad_out == 1):  # a loss scaled after the step (accumulation, fp16 scaling)
            grads = [None if g is None else g * grad_out for g in grads]
        return (None, None, *grads)


class BatchParts:
    """``loss_fn(batch)`` for a grid batch ``[B, ...]`` as up to ``parts`` parts at once on the CPU (see the
    module's docstring): never more parts than the process has intra-op threads or the batch has samples.
    With one part, parameters off the CPU, or a padded batch, it is just ``loss_fn(batch)``."""

    def __init__(self, parts: int):
        if parts < 1:
            raise ValueError(f"parts must be >= 1, got {parts}")
        self.parts = parts
        self._threads: Optional[PartThreads] = None

    def parts_for(self, batch: dict[str, Any], params: Iterable[torch.Tensor]) -> int:
        if self.parts == 1 or "valid" in batch or any(p.device.type != "cpu" for p in params):
            return 1
        return min(self.parts, torch.get_num_threads(), batch["tokens"].shape[0])

    def __call__(self, loss_fn: LossFn, batch: dict[str, Any], params: Iterable[torch.Tensor]) -> torch.Tensor:
        """The batch's scalar loss; its backward puts the batch's gradients into ``params`` (those with
        ``requires_grad``; an iterable such as ``model.parameters()``, read only when the batch splits)."""
        if self.parts == 1:  # the default: nothing more to do on a step's hot path
            return loss_fn(batch)
        params = list(params)
        parts = self.parts_for(batch, params)
        if parts == 1:
            return loss_fn(batch)
        params = [p for p in params if p.requires_grad]
        pieces = split_grid_batch(batch, parts)
        autocast = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

        def part(piece: dict[str, Any]) -> tuple[torch.Tensor, tuple[Optional[torch.Tensor], ...]]:
            """The part's loss and gradients, weighted by its share of the batch's samples."""
            with torch.enable_grad(), torch.autocast("cpu", dtype=autocast[1], enabled=autocast[0]):
                loss = loss_fn(piece) * (piece["tokens"].shape[0] / batch["tokens"].shape[0])
                return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

        results = self._pool(parts).map(part, pieces)
        loss = sum(part_loss for part_loss, _ in results)
        grads = [add_in_order([g[i] for _, g in results]) for i in range(len(params))]
        return _Gradients.apply(loss, grads, *params)

    def _pool(self, parts: int) -> PartThreads:
        threads_each = max(1, torch.get_num_threads() // parts)
        if self._threads is None or (self._threads.parts, self._threads.threads_each) != (parts, threads_each):
            self.close()
            self._threads = PartThreads(parts, threads_each)
        return self._threads

    def close(self) -> None:
        if self._threads is not None:
            self._threads.close()
            self._threads = None


def add_in_order(tensors: Sequence[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
    """The sum, in order, skipping None (a part whose loss did not use the parameter); None if all are. Out of
    place: a gradient autograd returns may be shared by two parameters, or a broadcast view."""
    total: Optional[torch.Tensor] = None
    for t in tensors:
        if t is not None:
            total = t if total is None else total + t
    return total
