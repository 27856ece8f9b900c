"""Image loader throughput: omnimask vs torchvision ImageFolder, same JPEGs, same workers.

    python -m benchmarks.loader_image [--images 1024] [--workers 1 2] [--batches 60] [--rounds 6]

Builds ImageNet-sized JPEGs (short side ~375 px) from scikit-image's sample
photos, preprocesses them into shards (passthrough, no resize), then times:

- ``omnimask``: the full loader of the MAE ViT-B recipe: read shard, decode,
  RandomResizedCrop(224, scale 0.2-1) + flip, patchify, random 75% mask and
  norm-pixel target, collated;
- ``omnimask-decode``: the same stream with decode + crop + flip only (the
  cost of on-the-fly tokenize + mask + target is the gap to the line above);
- ``omnimask-sequential``: the same pipeline over a plain sequential read of
  the shards (whole shards dealt to workers, no global order, no resume): the
  gap to ``omnimask`` is the cost of the resumable, layout-independent order;
- ``imagefolder``: torchvision ``ImageFolder`` + RandomResizedCrop(224, scale
  0.2-1, bicubic) + flip + ToTensor + Normalize, shuffled.

Every figure is samples/s after a warm-up, the best of 3 bursts taken in turn with the other loaders,
over the same files (page cache warm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import decode_only_loader, throughputs_in_turn
from benchmarks.inputs import build_jpegs
from omnimask.core.collate import collate
from omnimask.core.recipe import Recipe
from omnimask.data.loader import BatchStream, SamplePipeline, ShardLoader, loader_worker
from omnimask.io.formats import iter_shard
from omnimask.io.manifest import Manifest


class SequentialStream:
    """The plain alternative to ShardStream: shards dealt whole to workers, read front to back."""

    def __init__(self, root: Path, pipeline: SamplePipeline, batch_size: int):
        self.root, self.pipeline, self.batch_size = root, pipeline, batch_size
        self.manifest = Manifest.load(root)

    def samples(self) -> Iterator[dict]:
        worker, workers = loader_worker()
        while True:
            for shard in self.manifest.shards[worker::workers]:
                for key, members in iter_shard(self.manifest.format, self.root / shard.path):
                    yield self.pipeline(key, members, 0)

    def iter_batches(self, collate_fn: Callable[[list[dict]], dict]) -> Iterator[dict]:
        """Batches as :meth:`ShardStream.iter_batches` gives them, so that :class:`BatchStream` hands them to the
        main process the same way for both loaders."""
        samples = self.samples()
        while True:
            yield collate_fn([next(samples) for _ in range(self.batch_size)])


def image_shards(root: Path, images: int) -> tuple[Path, Path, Recipe]:
    """``images`` JPEGs under ``root/raw``, preprocessed into ``root/shards`` (passthrough), and the MAE ViT-B
    recipe over them."""
    from omnimask.core.config import load_recipe
    from omnimask.data.preprocess import preprocess

    raw, shards = root / "raw", root / "shards"
    build_jpegs(raw, images)
    preprocess("image", raw, shards, samples_per_shard=128)
    return raw, shards, Recipe.from_config(load_recipe("mae_image", [f"data.path={shards}"]))


def measure(images: int = 1024, workers: tuple[int, ...] = (1, 2), batches: int = 60, batch_size: int = 64, rounds: int = 6) -> list[dict]:
    """The four loaders over the same ``images`` JPEGs, for each number of loader ``workers``: ``batches`` each, in
    ``rounds`` alternating bursts (:func:`~benchmarks.common.throughputs_in_turn`)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    from omnimask.core.config import DataConfig
    from omnimask.data.loader import build_loader

    with tempfile.TemporaryDirectory() as tmp:
        raw, shards, recipe = image_shards(Path(tmp), images)
        baseline_tf = T.Compose(
            [
                T.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )
        results = []
        for n in workers:
            common = dict(batch_size=batch_size, num_workers=n, persistent_workers=True, prefetch_factor=4)
            folder = DataLoader(ImageFolder(str(raw), transform=baseline_tf), shuffle=True, drop_last=True, **common)
            ours = build_loader(recipe, data=DataConfig(path=shards, batch_size=batch_size, num_workers=n), seed=0)
            decode_only = decode_only_loader(recipe, shards, batch_size, n)
            sequential = ShardLoader(
                BatchStream(SequentialStream(shards, SamplePipeline(recipe, 0), batch_size), collate),  # type: ignore[arg-type]  # has the iter_batches BatchStream calls
                num_workers=n,
                prefetch_factor=4,
                pin_memory=False,
            )
            row: dict = {"modality": "image", "workers": n, "reference": "imagefolder"}
            loaders = {"imagefolder": folder, "omnimask-decode": decode_only, "omnimask": ours, "omnimask-sequential": sequential}
            row.update({name: r for name, (r, _) in throughputs_in_turn(loaders, batches, rounds).items()})
            row["speedup_vs_reference"] = row["omnimask"] / row["imagefolder"]
            row["mask_target_overhead"] = row["omnimask-decode"] / row["omnimask"] - 1
            row["resumable_order_overhead"] = row["omnimask-sequential"] / row["omnimask"] - 1
            results.append(row)
            print(
                f"image workers={n}: imagefolder {row['imagefolder']:.0f}/s | omnimask decode+crop {row['omnimask-decode']:.0f}/s"
                f" | omnimask full {row['omnimask']:.0f}/s | speedup x{row['speedup_vs_reference']:.2f}"
                f" | tokenize+mask+target overhead {100 * row['mask_target_overhead']:.1f}%"
                f" | sequential {row['omnimask-sequential']:.0f}/s (resumable order overhead "
                f"{100 * row['resumable_order_overhead']:.1f}%)",
                flush=True,
            )
        return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=6, help="alternating bursts the batches are split into")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    results = measure(args.images, tuple(args.workers), args.batches, args.batch_size, args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
