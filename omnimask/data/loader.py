"""Streaming loader: shards -> decoded, tokenized, masked samples with targets -> batches.

Each rank walks the global order of :mod:`omnimask.data.order` (a function
of seed, epoch and manifest only) in steps of ``world_size x batch_size``
samples; DataLoader worker ``w`` of ``K`` serves the steps ``w, w + K, ...``, so
the DataLoader's round-robin over workers gives the batches in step order.
Samples are read by random access into the shards (tar member offsets, Parquet
row groups). Crops, flips and masks come from seeds derived from ``(seed,
epoch, sample key)``, so nothing depends on the rank or worker layout, and a
stream started at a checkpoint's position continues exactly, with any layout.

A sample that fails to decode is logged and replaced by a neighbouring good one
(counted in ``batch["replaced"]``), so every step keeps its size;
``data.strict`` makes it an error instead.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from omnimask.core.collate import recipe_collate
from omnimask.core.config import DataConfig
from omnimask.core.contracts import ContractError, check_corrupt, check_mask, check_target, check_tokens
from omnimask.core.interfaces import TokenLayout
from omnimask.core.recipe import Recipe
from omnimask.core.seeding import derive_seed
from omnimask.data.order import BudgetPlan, Cursor, FixedPlan, FollowsTraining, Plan, Position, advance, check_resume, epoch_order
from omnimask.data.shared_batch import BufferPool, Recycler, ReleaseBoard, in_one_buffer
from omnimask.io.formats import Sample, ShardFile
from omnimask.io.manifest import Manifest, check_shard_digest, check_shard_sizes, load_sizes

log = logging.getLogger(__name__)


class SamplePipeline:
    """``(key, members, epoch)`` -> ``{key, tokens [N, D], mask [N], target [N_p, ...]}`` (compact target).

    ``target`` is left out where the model gathers it from the batch's tokens on the device
    (``target_in_loader`` False: a ``gathers_tokens`` target, grid tokens the encoder sees
    uncorrupted; :meth:`omnimask.core.recipe.MaskedModel.compact_target`).

    Optional fields, by recipe:

    - ``queries [N]`` with a decoder masker: the positions it leaves visible to the
      decoder; the target then covers the hidden ones among them (``mask & queries``);
    - ``coords [N, C]`` and ``edges [2, E]`` when the tokenizer gives them (the maskers
      see the coordinates too); ``edge_hidden [E]`` with an edge masker;
    - ``mask_token [N]`` with a masker that shows the encoder every token: ``tokens``
      are then the corrupted ones the encoder sees (the target holds the originals).

    Variable-length tokenizers give each sample its own token count; the maskers get
    the sample's own layout ``(N,)``.

    ``tokens`` and ``mask`` stay as the tokenizer and masker gave them, numpy arrays or
    tensors (collate makes tensors of whole batches): in a loader worker, each crossing
    between numpy and torch has a cost of its own, high right after a decode has flushed the caches
    (``python -m benchmarks.micro``).
    Targets, ``corrupt`` and the decoder-masker combination get tensors.
    """

    def __init__(self, recipe: Recipe, seed: int, strict: bool = False):
        self.strict = strict
        self.decode = recipe.modality.decoder(recipe.augment, recipe.tokenizer)
        self.tokenizer = recipe.tokenizer
        self.masker = recipe.masker
        self.decoder_masker = recipe.decoder_masker
        self.edge_masker = recipe.edge_masker
        self.target = recipe.target
        self.target_in_loader = not (
            recipe.target.gathers_tokens and not recipe.masker.shows_hidden and not recipe.tokenizer.variable_length
        )
        self.layout = recipe.tokenizer.layout
        self.seed = seed

    def __call__(self, key: str, members: dict[str, bytes], epoch: int) -> dict[str, Any]:
        return self.views(key, members, epoch, 1)[0]

    def views(self, key: str, members: dict[str, bytes], epoch: int, repeats: int) -> list[dict[str, Any]]:
        """``repeats`` outputs of one sample (``data.repeats``), each with its own seeds: its own crop, flip
        and mask. View 0 is the sample as ``repeats=1`` gives it. The decoder does the work the views can
        share once (:func:`decode_views`: a video's frames)."""
        seeds = [view_seeds(self.seed, epoch, key, r) for r in range(repeats)]
        samples = decode_views(self.decode, members, [seed("decode") for seed in seeds])
        return [self.finish(key, sample, seed) for sample, seed in zip(samples, seeds)]

    def finish(self, key: str, sample: Any, seed: Callable[[str], int]) -> dict[str, Any]:
        """A decoded sample -> tokens, mask, target (and what the recipe adds); ``seed(purpose)``."""
        t = check_tokens(self.tokenizer, self.tokenizer(sample))
        tokens, coords = t.values, t.coords
        result = {"key": key, "tokens": tokens}
        if coords is not None:
            result["coords"] = coords
        if t.edges is not None:
            result["edges"] = t.edges
            if self.edge_masker is not None:
                result["edge_hidden"] = self.edge_masker.hide_edges(t.edges, tokens.shape[0], seed("edge_mask"))
        if self.masker.batch_level:  # masked with the rest of its batch, by the collate (BatchMasking)
            result["tokens"], result["mask_seed"] = torch.as_tensor(tokens), seed("mask")
            return result
        layout = TokenLayout((tokens.shape[0],), self.layout.token_dim) if self.tokenizer.variable_length else self.layout
        result["mask"] = mask = check_mask(self.masker, self.masker(layout, seed("mask"), coords), layout)
        predicted = mask
        if self.decoder_masker is not None:
            hidden = self.decoder_masker(layout, seed("decoder_mask"), coords)
            result["queries"] = queries = ~torch.as_tensor(check_mask(self.decoder_masker, hidden, layout, "decoder masker"))
            predicted = torch.as_tensor(mask) & queries
        if self.target_in_loader:
            value = self.target(torch.as_tensor(tokens), torch.as_tensor(predicted))
            result["target"] = check_target(self.target, value, predicted)
        if self.masker.shows_hidden:
            tokens, mask = torch.as_tensor(tokens), torch.as_tensor(mask)
            result["tokens"], result["mask_token"] = check_corrupt(self.masker, tokens, self.masker.corrupt(tokens, mask, seed("corrupt")))
        return result

    def try_call(self, key: str, members: dict[str, bytes], epoch: int, shard: str) -> dict[str, Any] | Failure:
        return self.try_views(key, members, epoch, shard, 1)[0]

    def try_views(self, key: str, members: dict[str, bytes], epoch: int, shard: str, repeats: int) -> list[dict[str, Any] | Failure]:
        """Like :meth:`views`, but a sample that fails is logged (shard, key, reason) and gives
        ``repeats`` failures (:class:`Failure`) for :func:`replace_failures`; with ``strict`` it raises
        instead. A component that breaks its contract (:mod:`omnimask.core.contracts`) always raises."""
        try:
            return self.views(key, members, epoch, repeats)  # type: ignore[return-value]  # list is invariant; nothing appends to it
        except ContractError:
            raise  # a broken component fails for every sample: replacing them would hide it
        except Exception as e:
            if self.strict:
                raise SamplesFailed(f"{type(e).__name__}: {e} (sample {key} in shard {shard} failed to load; data.strict)") from e
            reason = f"{type(e).__name__}: {e}"
            log.warning("replacing sample %s in shard %s: %s", key, shard, reason)
            return [Failure(key, reason)] * repeats


def view_seeds(seed: int, epoch: int, key: str, view: int) -> Callable[[str], int]:
    """``purpose -> seed`` of view ``view`` of sample ``key`` in ``epoch``; view 0's are the sample's own."""
    if view == 0:
        return lambda purpose: derive_seed(seed, epoch, key, purpose)
    return lambda purpose: derive_seed(seed, epoch, key, purpose, "view", view)


def decode_views(decode: Callable[[dict[str, bytes], int], Any], members: dict[str, bytes], seeds: list[int]) -> list[Any]:
    """One decoded sample per seed. A decoder with a ``views(members, seeds)`` method shares work between
    them (the video decoder decodes the frames once); any other is called once per seed."""
    views = getattr(decode, "views", None)
    if views is None:
        return [decode(members, s) for s in seeds]
    out = views(members, seeds)
    if len(out) != len(seeds):  # a short or long list would shift every later batch off its step
        raise ContractError(f"{type(decode).__name__}.views returned {len(out)} samples for {len(seeds)} seeds")
    return out


class SamplesFailed(RuntimeError):
    """Loading stopped because samples failed (``data.strict``, or too many in a row). The message starts with
    the last sample's own error (``ValueError: ...``), so that it is what a failed run reports first."""


@dataclass(frozen=True)
class Failure:
    """A sample that failed to load (:meth:`SamplePipeline.try_views`), and why (``"Type: message"``)."""

    key: str
    reason: str


def replace_failures(
    outputs: Iterator[dict[str, Any] | Failure], max_failures: int = 1000, max_first: int = 16
) -> Iterator[dict[str, Any]]:
    """One output per input, whatever fails: a :class:`Failure` is replaced by the previous good
    output (by the next good one while none has come yet), marked ``replaced``. Deterministic given
    the order, and it keeps every consumer's sample count, and so the batch count, unchanged.

    The stream ends with an error, naming the last failure, after ``max_failures`` failures in a row
    (a dataset the recipe cannot read at all must not spin forever), or after ``max_first`` when no
    sample has loaded yet: a recipe that does not fit the data, or a component that raises for every
    sample, then stops the run at once rather than after a thousand warnings. A stream that ends before
    any sample loaded (a Ray Data batch of failures) ends with that error too: no output is dropped silently."""
    pending = failed = 0
    last: Optional[dict[str, Any]] = None
    failure: Optional[Failure] = None

    def stop() -> SamplesFailed:
        so_far = " (every one so far)" if last is None else ""
        return SamplesFailed(
            f"{failure.reason} (sample {failure.key}; {failed} samples in a row failed to load{so_far}). Does the recipe fit this dataset?"
        )

    for out in outputs:
        if isinstance(out, Failure):
            failed, failure = failed + 1, out
            if failed >= max_failures or (last is None and failed >= max_first):
                raise stop()
            if last is None:
                pending += 1
            else:
                yield {**last, "replaced": True}
            continue
        failed = 0
        last = {**out, "replaced": False}
        yield last
        for _ in range(pending):
            yield {**out, "replaced": True}
        pending = 0
    if pending:  # the stream ended before any sample loaded: nothing to stand in for the failures
        raise stop()


def loader_worker() -> tuple[int, int]:
    """``(worker_id, num_workers)`` of this DataLoader worker; ``(0, 1)`` in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info else (0, 1)


class ShardStream(IterableDataset):
    """An endless stream of pipeline outputs for one rank, in the global order of :mod:`.order`.

    ``start`` is the position of the first step (from a checkpoint on resume);
    ``epochs`` limits the stream to that many epochs from ``start`` (tests).
    With ``max_tokens`` the rank's batches hold as many samples as fit the token
    budget (:class:`omnimask.data.order.BudgetPlan`; the dataset's ``sizes.npy``
    gives the lengths) instead of ``batch_size``. With ``repeats`` > 1 each sample read
    gives that many views in a row (:meth:`SamplePipeline.views`): a batch holds
    ``batch_size / repeats`` samples of the order, and positions count samples read.
    Iterating gives samples (views); :meth:`iter_batches` gives them collated, one batch per step.
    """

    def __init__(
        self,
        path: str | Path,
        pipeline: SamplePipeline,
        *,
        seed: int = 0,
        window: int = 4,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        start: Position = Position(),
        epochs: Optional[int] = None,
        verify: bool = False,
        max_tokens: Optional[int] = None,
        sort_window: int = 1024,
        repeats: int = 1,
    ):
        if repeats < 1 or batch_size % repeats or (repeats > 1 and max_tokens is not None):
            raise ValueError(f"repeats={repeats} must be >= 1 and divide batch_size={batch_size}, without max_tokens")
        self.root = Path(path)
        self.manifest = Manifest.load(self.root)
        if not self.manifest.shards:
            raise ValueError(self.manifest.no_samples(self.root))
        check_shard_sizes(self.root, self.manifest)
        self.counts = [s.num_samples for s in self.manifest.shards]
        self.epoch_len = sum(self.counts)
        self.pipeline = pipeline
        self.seed, self.window = seed, window
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.start, self.epochs = start, epochs
        self.verify = verify
        self.repeats, self.max_tokens = repeats, max_tokens
        self.plan: Plan = FixedPlan(self.epoch_len, batch_size // repeats, world_size)
        if max_tokens is not None:
            tokens = np.vectorize(pipeline.tokenizer.num_tokens, otypes=[np.int64])(load_sizes(self.root, self.manifest))
            self.plan = BudgetPlan(self.counts, tokens, seed, window, world_size, max_tokens, sort_window)
        self._files: dict[int, ShardFile] = {}

    def steps(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(epoch, offsets)`` of this rank's batch of each step this worker serves."""
        worker, workers = loader_worker()
        pos, t = self.start, 0
        while self.epochs is None or pos.epoch < self.start.epoch + self.epochs:
            if t % workers == worker:
                yield pos.epoch, self.plan.rank_batch(pos, self.rank)
            pos, t = advance(pos, 1, self.plan.step_size, self.plan.epoch_len), t + 1

    def shard(self, i: int) -> ShardFile:
        """Shard ``i``, opened (and with ``verify``, hash-checked) the first time this process reads it."""
        if i not in self._files:
            info = self.manifest.shards[i]
            if self.verify:
                check_shard_digest(self.root, info)
            self._files[i] = ShardFile(self.manifest.format, self.root / info.path)
        return self._files[i]

    def raw_samples(self) -> Iterator[tuple[int, str, Sample]]:
        """``(epoch, shard_path, (key, members))`` of this worker's steps, in order."""
        order, order_epoch = None, -1
        for epoch, offsets in self.steps():
            if epoch != order_epoch:
                order, order_epoch = epoch_order(self.counts, self.seed, epoch, self.window), epoch
            for s, j in order[offsets]:
                yield epoch, self.manifest.shards[s].path, self.shard(int(s))[int(j)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        outputs = (
            view
            for epoch, shard, (key, members) in self.raw_samples()
            for view in self.pipeline.try_views(key, members, epoch, shard, self.repeats)
        )
        yield from replace_failures(outputs, max_failures=1000 * self.repeats, max_first=16 * self.repeats)  # counts views

    def iter_batches(self, collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """This worker's batches, collated: one per step it serves (sizes vary with a token budget)."""
        sizes = (len(offsets) for _, offsets in self.steps())  # the same walk as the samples'
        samples = iter(self)
        for size in sizes:
            yield collate_fn([next(samples) for _ in range(size * self.repeats)])


class BatchStream(IterableDataset):
    """A :class:`ShardStream`'s collated batches, for a DataLoader that does not batch (``batch_size=None``).

    In a loader worker each batch crosses to the main process as views of one shared-memory segment:
    with a ``board`` (:class:`ShardLoader` makes one), a segment from the worker's pool of reused ones
    (:mod:`omnimask.data.shared_batch`), else a fresh one."""

    def __init__(
        self, stream: ShardStream, collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]], board: Optional[ReleaseBoard] = None
    ):
        self.stream, self.collate_fn, self.board = stream, collate_fn, board
        self._pool: Optional[BufferPool] = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = self.stream.iter_batches(self.collate_fn)
        info = get_worker_info()
        if info is None:  # the main process: nothing crosses
            return batches
        if self.board is None:
            return map(in_one_buffer, batches)
        if self._pool is None:  # one pool a worker process, kept across epochs by persistent workers
            self._pool = BufferPool(self.board, info.id)
        return map(self._pool.pack, batches)


class ShardLoader(FollowsTraining, DataLoader):
    """The DataLoader :func:`build_loader` returns: its workers hand batches over in reused shared-memory
    segments, freed for reuse once this process drops each batch (:class:`~.shared_batch.Recycler`);
    ``reuse_buffers=False``: a fresh segment a batch (``python -m benchmarks.batch_transport`` compares them)."""

    def __init__(self, dataset: BatchStream, *, num_workers: int, prefetch_factor: int, pin_memory: bool, reuse_buffers: bool = True):
        if num_workers > 0 and reuse_buffers:
            # a worker has at most prefetch_factor batches queued; the consumer, the pin-memory thread and
            # Lightning's look-ahead hold a few more, and a batch is freed one fetch after it is dropped
            dataset.board = ReleaseBoard(num_workers, prefetch_factor + 4)
        self.recycler = Recycler(dataset.board) if dataset.board is not None else None
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            pin_memory=pin_memory,
        )

        self._iterated = False

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]  # DataLoader's names its own iterator class
        self._iterated = True
        if self.recycler is None:
            return super().__iter__()
        return self.recycler.iterate(super().__iter__)

    def layout(self) -> dict[str, Any]:
        """What a resume compares (:func:`~omnimask.data.order.check_resume`) and reports."""
        s = self.dataset.stream
        return {
            "loader": "torch",
            "world_size": s.world_size,
            "num_workers": self.num_workers,
            "batch_size": s.batch_size,
            "max_tokens": s.max_tokens,
            "repeats": s.repeats,
            "seed": s.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        """The layout and the data position ``(epoch, offset)`` after the trained steps: the first sample of the
        next step, whatever the loader has prefetched. Lightning stores it in the checkpoint and restores it
        before iterating; the module also keeps it as ``omnimask_data``, which ``omnimask`` tools read."""
        s = self.dataset.stream
        pos = Cursor(s.start, self.start_step, s.plan).at(self.trained_steps())
        return {**self.layout(), "epoch": pos.epoch, "offset": pos.offset}

    def load_state_dict(self, state: dict[str, Any], step: Optional[int] = None) -> None:
        """Continue after ``step`` trained steps (default: the loader's own count, :meth:`follow`) from a
        :meth:`state_dict`: with any number of ranks, loader workers or batch size, the next step starts at the
        saved position. A state of another loader, seed or token budget is refused with the reason."""
        if self._iterated:
            raise RuntimeError("load_state_dict after the loader started iterating: its workers already have their order")
        check_resume(state, self.layout())
        s = self.dataset.stream
        s.start = Position(state.get("epoch", 0), state.get("offset", 0))
        self.start_step = step if step is not None else self.trained_steps()


def build_loader(
    recipe: Recipe,
    *,
    data: DataConfig,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start: Position = Position(),
    epochs: Optional[int] = None,
    to_gpu: bool = False,
    reuse_buffers: bool = True,
) -> ShardLoader:
    """A DataLoader of :func:`omnimask.core.collate.collate` batches over the shard directory ``data.path``
    as ``data`` describes it (batch size, loader workers, shuffle window, token budget, ...), for rank
    ``rank`` of ``world_size``, starting at ``start``. Batches are collated in the loader workers
    (``loader.dataset.stream`` is the :class:`ShardStream`); they are pinned when ``data.pin_memory`` says
    so and the batches go to a GPU (``to_gpu``)."""
    if data.path is None:
        raise ValueError("data.path: the shard directory to read is not set")
    stream = ShardStream(
        data.path,
        SamplePipeline(recipe, seed, data.strict),
        seed=seed,
        window=data.shuffle_window,
        rank=rank,
        world_size=world_size,
        batch_size=data.batch_size,
        start=start,
        epochs=epochs,
        verify=data.verify_shards,
        max_tokens=data.max_tokens,
        sort_window=data.sort_window,
        repeats=data.repeats,
    )
    loader = ShardLoader(
        BatchStream(stream, recipe_collate(recipe)),
        num_workers=data.num_workers,
        prefetch_factor=data.prefetch_factor,
        pin_memory=data.pin_memory and to_gpu,
        reuse_buffers=reuse_buffers,
    )
    if data.num_workers > 0:
        atexit.register(stop_workers, weakref.ref(loader))
    return loader


def stop_workers(loader_ref: "weakref.ref[DataLoader]") -> None:
    """Stop a loader's persistent workers if it is still alive: registered at exit by :func:`build_loader`.

    Workers still running when the interpreter exits are terminated by multiprocessing's own exit
    handler, which skips their clean-up: each leaves its ``pymp-*`` folder (a socket it shared batches
    through) in the temporary directory. Handlers run last-registered first, so this one asks the
    workers to finish before that happens."""
    loader = loader_ref()
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
