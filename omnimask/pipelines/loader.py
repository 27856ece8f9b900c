"""Streaming loader: shards -> decoded, tokenized, masked samples with targets -> batches.

Per epoch the shard order is a seeded permutation of the manifest's shards.
Shards are dealt round-robin to the ``world_size * num_workers`` consumers
(rank-major); when there are fewer shards than consumers, every consumer reads
all shards and keeps every ``consumers``-th sample instead. Either way no
sample is read by two consumers and none is skipped. Each consumer shuffles
its stream through a seeded buffer. Crops, flips and masks come from seeds
derived from ``(seed, epoch, sample key)``, so a sample's augmentation and mask
do not depend on which worker or rank reads it.

The stream runs over epochs until the trainer stops, so a loader worker is
started once per run. On resume each worker skips, without decoding, the
samples it delivered before the checkpoint. A sample that fails to decode is
logged and replaced by a neighbouring good one (counted in ``batch["replaced"]``),
so that the stream yields exactly one sample per stored sample; ``data.strict``
makes it an error instead.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional

from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from omnimask.models.recipe import Recipe
from omnimask.pipelines.formats import Sample, iter_shard
from omnimask.pipelines.manifest import Manifest, file_sha256
from omnimask.seeding import derive_seed, rng

log = logging.getLogger(__name__)


class SamplePipeline:
    """``(key, members, epoch)`` -> ``{key, tokens [N, D], mask [N], target [N_h, ...]}`` (compact target)."""

    def __init__(self, recipe: Recipe, seed: int, strict: bool = False):
        self.strict = strict
        self.decode = recipe.modality.decoder(recipe.augment, recipe.tokenizer)
        self.tokenizer = recipe.tokenizer
        self.masker = recipe.masker
        self.target = recipe.target
        self.layout = recipe.tokenizer.layout
        self.seed = seed

    def __call__(self, key: str, members: dict[str, bytes], epoch: int) -> dict[str, Any]:
        sample = self.decode(members, derive_seed(self.seed, epoch, key, "decode"))
        tokens = self.tokenizer(sample)
        mask = self.masker(self.layout, derive_seed(self.seed, epoch, key, "mask"))
        return {"key": key, "tokens": tokens, "mask": mask, "target": self.target(tokens, mask)}

    def try_call(self, key: str, members: dict[str, bytes], epoch: int, shard: str) -> Optional[dict[str, Any]]:
        """Like calling the pipeline, but a sample that fails is logged (shard, key, reason) and gives
        None, for the caller to replace; with ``strict`` it raises instead."""
        try:
            return self(key, members, epoch)
        except Exception as e:
            if self.strict:
                raise RuntimeError(f"sample {key} in shard {shard} failed to load (data.strict): {type(e).__name__}: {e}") from e
            log.warning("replacing sample %s in shard %s: %s: %s", key, shard, type(e).__name__, e)
            return None


def replace_failures(outputs: Iterator[Optional[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """One output per input, whatever fails: a failed sample (None) is replaced by the next
    good one (the previous good one after it), marked ``replaced``. Deterministic given the
    order, and it keeps every consumer's sample count, and so the batch count, unchanged."""
    pending = 0
    last: Optional[dict[str, Any]] = None
    for out in outputs:
        if out is None:
            if last is None:
                pending += 1
            else:
                yield {**last, "replaced": True}
            continue
        last = {**out, "replaced": False}
        yield last
        for _ in range(pending):
            yield {**out, "replaced": True}
        pending = 0


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples: ``tokens [B, N, D]``, ``mask [B, N]``, ``target [B, N_h, ...]``, ``keys``, ``num_hidden``."""
    mask = default_collate([s["mask"] for s in samples])  # stacks into shared memory in a worker
    counts = mask.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"masks in a batch must hide the same number of tokens, got {counts.tolist()}")
    return {
        "keys": [s["key"] for s in samples],
        "tokens": default_collate([s["tokens"] for s in samples]),
        "mask": mask,
        "target": default_collate([s["target"] for s in samples]),
        "num_hidden": int(counts[0]),
        "replaced": sum(bool(s.get("replaced")) for s in samples),
    }


def shard_order(seed: int, epoch: int, num_shards: int) -> list[int]:
    """The seeded shard permutation of ``epoch`` (shared by the torch and Ray Data loaders)."""
    return [int(i) for i in rng(seed, epoch, "shard_order").permutation(num_shards)]


def loader_worker() -> tuple[int, int]:
    """``(worker_id, num_workers)`` of this DataLoader worker; ``(0, 1)`` in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info else (0, 1)


class ShardStream(IterableDataset):
    """An endless, seeded stream of pipeline outputs over a shard directory."""

    def __init__(
        self,
        path: str | Path,
        pipeline: SamplePipeline,
        seed: int = 0,
        shuffle_buffer: int = 512,
        rank: int = 0,
        world_size: int = 1,
        epochs: Optional[int] = None,
        resume_batches: int = 0,
        batch_size: int = 1,
        verify: bool = False,
    ):
        self.root = Path(path)
        self.manifest = Manifest.load(self.root)
        if not self.manifest.shards:
            raise ValueError(f"{self.root} holds no samples (all {self.manifest.num_inputs} inputs were quarantined)")
        for shard in self.manifest.shards:
            actual = os.path.getsize(self.root / shard.path) if (self.root / shard.path).exists() else None
            if actual != shard.bytes:
                raise ValueError(
                    f"shard {shard.path} in {self.root} is {actual if actual is not None else 'missing'} bytes, "
                    f"the manifest says {shard.bytes}: the dataset is incomplete or was modified"
                )
        self.pipeline = pipeline
        self.seed, self.shuffle_buffer = seed, shuffle_buffer
        self.rank, self.world_size = rank, world_size
        self.epochs = epochs
        self.resume_batches, self.batch_size = resume_batches, batch_size
        self.verify, self._verified = verify, set()

    def consumer(self) -> tuple[int, int]:
        """``(consumer_id, num_consumers)`` of this process: rank-major over loader workers."""
        worker, workers = loader_worker()
        return self.rank * workers + worker, self.world_size * workers

    def raw_samples(self, epoch: int) -> Iterator[tuple[str, Sample]]:
        """``(shard_path, (key, members))`` of this consumer's share of ``epoch``, before shuffling."""
        me, consumers = self.consumer()
        shards = self.manifest.shards
        order = shard_order(self.seed, epoch, len(shards))
        if len(shards) >= consumers:
            for i in order[me::consumers]:
                for sample in self.read_shard(i):
                    yield shards[i].path, sample
        else:
            stream = ((shards[i].path, s) for i in order for s in self.read_shard(i))
            yield from itertools.islice(stream, me, None, consumers)

    def read_shard(self, i: int) -> Iterator[Sample]:
        """Samples of shard ``i``; with ``verify``, its sha256 is checked the first time this process reads it."""
        shard = self.manifest.shards[i]
        path = self.root / shard.path
        if self.verify and i not in self._verified:
            digest = file_sha256(path)
            if digest != shard.sha256:
                raise ValueError(f"shard {shard.path} in {self.root} has sha256 {digest}, the manifest says {shard.sha256}")
            self._verified.add(i)
        return iter_shard(self.manifest.format, path)

    def shuffled(self, epoch: int) -> Iterator[tuple[str, Sample]]:
        me, _ = self.consumer()
        g = rng(self.seed, epoch, me, "shuffle_buffer")
        buf: list[tuple[str, Sample]] = []
        if self.shuffle_buffer <= 1:
            yield from self.raw_samples(epoch)
            return
        for item in self.raw_samples(epoch):
            if len(buf) < self.shuffle_buffer:
                buf.append(item)
                continue
            j = int(g.integers(0, len(buf)))
            buf[j], item = item, buf[j]
            yield item
        g.shuffle(buf)  # type: ignore[arg-type]
        yield from buf

    def samples_to_skip(self) -> int:
        """Samples this consumer already delivered before ``resume_batches`` batches of its rank.

        A DataLoader with K workers takes batch ``i`` from worker ``i % K``, so
        worker ``w`` made ``ceil((resume_batches - w) / K)`` of them.
        """
        worker, workers = loader_worker()
        made = max(0, -(-(self.resume_batches - worker) // workers))
        return made * self.batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epochs = itertools.count() if self.epochs is None else range(self.epochs)
        skip = self.samples_to_skip()

        def outputs() -> Iterator[Optional[dict[str, Any]]]:
            nonlocal skip
            for epoch in epochs:
                for shard, (key, members) in self.shuffled(epoch):
                    if skip:  # resuming: pass over what was delivered before, without decoding it
                        skip -= 1
                        continue
                    yield self.pipeline.try_call(key, members, epoch, shard)

        yield from replace_failures(outputs())


def build_loader(
    recipe: Recipe,
    path: str | Path,
    batch_size: int,
    num_workers: int,
    seed: int,
    shuffle_buffer: int = 512,
    rank: int = 0,
    world_size: int = 1,
    prefetch_factor: int = 4,
    pin_memory: bool = False,
    epochs: Optional[int] = None,
    resume_batches: int = 0,
    strict: bool = False,
    verify: bool = False,
) -> DataLoader:
    """A DataLoader of :func:`collate` batches over the shard directory ``path``.

    ``resume_batches``: batches this rank already trained on (from a checkpoint);
    the stream continues exactly after them when the world size, the number of
    loader workers and the batch size are those of the checkpointed run.
    """
    stream = ShardStream(
        path, SamplePipeline(recipe, seed, strict), seed, shuffle_buffer, rank, world_size,
        epochs=epochs, resume_batches=resume_batches, batch_size=batch_size, verify=verify,
    )
    return DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        pin_memory=pin_memory,
        drop_last=True,
    )

