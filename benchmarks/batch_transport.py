"""How loader workers hand batches over: reused shared-memory segments vs a fresh segment a batch.

    python -m benchmarks.batch_transport [--images 1024] [--workers 1 2] [--batches 60] [--rounds 6] [--repeat 3]

The image loader of the MAE ViT-B recipe (the JPEGs of ``benchmarks.loader_image``), timed three ways in
turn (:func:`~benchmarks.common.throughputs_in_turn`):

- ``reused``: ``build_loader`` as ``omnimask pretrain`` runs it; each worker packs a batch into one of its
  reused segments (:mod:`omnimask.data.shared_batch`);
- ``fresh``: the same loader with ``reuse_buffers=False``: one new segment a batch, as a DataLoader makes
  for every tensor it hands over (torch allocates every page of it before the batch is copied in);
- ``decode``: decode + crop + flip alone, the baseline of the tokenize+mask+target share.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import decode_only_loader, throughputs_in_turn
from benchmarks.loader_image import image_shards


def measure(images: int, workers: tuple[int, ...], batches: int, rounds: int, repeat: int, batch_size: int = 64) -> list[dict]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from omnimask.core.config import DataConfig
    from omnimask.data.loader import build_loader

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _, shards, recipe = image_shards(Path(tmp), images)
        for n in workers:
            loaders = {
                "reused": build_loader(recipe, data=DataConfig(path=shards, batch_size=batch_size, num_workers=n), seed=0),
                "fresh": build_loader(
                    recipe, data=DataConfig(path=shards, batch_size=batch_size, num_workers=n), seed=0, reuse_buffers=False
                ),
                "decode": decode_only_loader(recipe, shards, batch_size, n),
            }
            for _ in range(repeat):
                rates = {name: r for name, (r, _) in throughputs_in_turn(loaders, batches, rounds).items()}
                row = {
                    "workers": n,
                    **rates,
                    "reused_vs_fresh": rates["reused"] / rates["fresh"],
                    "share_reused": rates["decode"] / rates["reused"] - 1,
                    "share_fresh": rates["decode"] / rates["fresh"] - 1,
                }
                rows.append(row)
                print(
                    f"workers={n}: reused {rates['reused']:.0f}/s | fresh {rates['fresh']:.0f}/s | decode alone "
                    f"{rates['decode']:.0f}/s | reused vs fresh x{row['reused_vs_fresh']:.3f} | tokenize+mask+target "
                    f"{100 * row['share_reused']:.1f}% reused, {100 * row['share_fresh']:.1f}% fresh",
                    flush=True,
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3, help="measurements per number of workers")
    args = ap.parse_args()
    measure(args.images, tuple(args.workers), args.batches, args.rounds, args.repeat)


if __name__ == "__main__":
    main()
