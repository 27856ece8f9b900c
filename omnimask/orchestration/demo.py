"""``omnimask demo``: the whole path offline, in a few minutes on a laptop CPU.

1. Cut a few hundred random crops out of the photographs that scikit-image
   ships (no network), as JPEG and PNG files in one folder per photograph, and
   add a few broken files to show the quarantine at work.
2. Preprocess them into WebDataset shards with the Ray Data job.
3. Pretrain the tiny MAE recipe on the CPU, logging the loss as it falls.
4. Write the reconstruction grid and say where everything is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from omnimask.config import load_recipe
from omnimask.orchestration.logs import format_loss
from omnimask.orchestration.pretrain import pretrain
from omnimask.pipelines.preprocess import preprocess

log = logging.getLogger("omnimask.demo")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "camera", "moon", "brick", "grass", "gravel", "coins")


def load_photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled sample photographs as RGB uint8 arrays."""
    import skimage.data

    photos = {}
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos[name] = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    return photos


def build_demo_images(out: Path, num_crops: int, seed: int = 0) -> int:
    """Write ``num_crops`` random crops (JPEG, every fifth PNG) plus three broken files; returns files written."""
    g = np.random.default_rng(seed)
    photos = load_photos()
    names = sorted(photos)
    for i in range(num_crops):
        name = names[i % len(names)]
        img = photos[name]
        h, w = img.shape[:2]
        side = int(g.integers(min(96, h, w), min(h, w) + 1))
        top, left = int(g.integers(0, h - side + 1)), int(g.integers(0, w - side + 1))
        crop = Image.fromarray(img[top : top + side, left : left + side]).resize((128, 128), Image.BICUBIC)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        if i % 5 == 4:
            crop.save(folder / f"crop{i:04d}.png")
        else:
            crop.save(folder / f"crop{i:04d}.jpg", quality=90)
    broken = out / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    good = (out / names[0] / "crop0000.jpg").read_bytes()
    (broken / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (broken / "empty.png").write_bytes(b"")
    (broken / "notes.txt").write_text("not an image\n")
    return num_crops + 3


def run_demo(workdir: str | Path = "demo_out", steps: Optional[int] = None, num_crops: int = 480) -> Path:
    workdir = Path(workdir).resolve()
    raw, shards = workdir / "raw", workdir / "shards"
    if raw.exists():
        import shutil

        shutil.rmtree(raw)
    n = build_demo_images(raw, num_crops)
    log.info("wrote %d demo input files (crops of scikit-image sample photos, 3 broken on purpose) to %s", n, raw)
    manifest = preprocess("image", raw, shards, samples_per_shard=64, overwrite=True)
    # one Ray Train worker with every local CPU, so that torch uses them all
    overrides = [f"data.path={shards}", f"run.dir={workdir / 'runs'}", f"scaling.cpus_per_worker={os.cpu_count() or 1}"]
    if steps is not None:
        overrides.append(f"trainer.max_steps={steps}")
    cfg = load_recipe("mae_image_tiny", overrides)
    if (workdir / "runs" / "demo").exists():
        import shutil

        shutil.rmtree(workdir / "runs" / "demo")
    result = pretrain(cfg, name="demo")
    run = result.run_dir
    print()
    print("omnimask demo finished")
    print(f"  dataset       {shards}: {manifest.num_samples} samples in {len(manifest.shards)} shards, "
          f"{manifest.num_quarantined} quarantined (see quarantine.jsonl)")
    print(f"  training      {result.steps} steps in {result.seconds:.0f}s, loss {format_loss(result.first_loss)} -> {format_loss(result.last_loss)}")
    print(f"  reconstruction {run / 'reconstruction.png'}  (rows: original | masked | reconstruction)")
    print(f"  checkpoints   {run}/checkpoint-step*/ (Ray Train)")
    print(f"  metrics       {run / 'metrics.csv'}; tensorboard --logdir {run / 'tensorboard'}")
    return run
