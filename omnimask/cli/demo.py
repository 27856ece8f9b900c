"""``omnimask demo``: the whole path offline, in a few minutes on a laptop CPU, per modality.

For each of image, video, audio, point cloud, graph and protein:

1. Write a few hundred real encoded inputs made on the spot (crops of the
   photographs scikit-image ships, camera pans over them as MP4/WebM/AVI,
   synthesised tones, chirps and notes as WAV/FLAC/OGG/MP3/M4A, primitive shapes as
   PLY/NPY/XYZ clouds and OFF/OBJ meshes, networkx graphs and the karate club as
   NPZ/JSON/GraphML/GML files and a TU folder, protein families as FASTA files),
   plus a few broken inputs to show the quarantine at work.
2. Preprocess them into WebDataset shards with the Ray Data job.
3. Pretrain the modality's tiny recipe on the CPU, logging the loss as it falls.
4. Write the reconstruction picture (original | masked | reconstruction) where
   one helps, and say where everything is.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from omnimask.core import registry
from omnimask.core.config import load_recipe
from omnimask.core.logs import format_loss
from omnimask.core.run_dir import RunDir

__all__ = ["DEMOS", "run_demo"]

log = logging.getLogger("omnimask.demo")


@dataclass(frozen=True)
class Demo:
    """One modality's demo: how many inputs its :meth:`~omnimask.core.interfaces.Modality.example_inputs` writes,
    the recipe, the shard size."""

    count: int
    recipe: str
    samples_per_shard: int
    what: str
    picture: bool = True
    """Whether the run writes a reconstruction picture."""


DEMOS = {
    "image": Demo(480, "mae_image_tiny", 64, "crops of scikit-image sample photos"),
    "video": Demo(96, "videomae_tiny", 16, "camera pans over the sample photos (MP4, WebM, AVI)"),
    "audio": Demo(160, "audiomae_tiny", 32, "tones, chirps, notes, noise (WAV, FLAC, OGG, MP3, M4A)"),
    "pointcloud": Demo(200, "pointmae_tiny", 32, "spheres, boxes, tori, cylinders, cones (PLY, NPY, XYZ, OFF, OBJ)"),
    "graph": Demo(240, "graphmae_tiny", 64, "networkx graphs and the karate club (NPZ, JSON, GraphML, GML, a TU folder)", picture=False),
    "protein": Demo(400, "esm_mlm_tiny", 128, "six made-up protein families (FASTA, plain and gzipped)", picture=False),
}


def run_demo(
    workdir: str | Path = "demo_out",
    modalities: Sequence[str] = tuple(DEMOS),
    steps: Optional[int] = None,
    num_inputs: Optional[int] = None,
) -> dict[str, Path]:
    """Run the demo of each modality in ``modalities``; returns their run directories."""
    from omnimask.data.ray_env import ray_session

    workdir = Path(workdir).resolve()
    unknown = sorted(set(modalities) - set(DEMOS))
    if unknown:
        raise ValueError(f"no demo for {unknown}; choose from {sorted(DEMOS)}")
    lines, runs = [], {}
    # one Ray instance for every modality: each start costs seconds (its processes, then the first job's
    # workers importing torch), twice per modality when preprocess and pretrain each start their own
    with ray_session():
        for name in modalities:
            runs[name], summary = _run_one(name, DEMOS[name], workdir / name, steps, num_inputs)
            lines += summary
    print("\nomnimask demo finished")
    print("\n".join(lines))
    return runs


def _run_one(name: str, demo: Demo, root: Path, steps: Optional[int], num_inputs: Optional[int]) -> tuple[Path, list[str]]:
    """One modality's demo under ``root``: write its inputs, preprocess, pretrain; its run directory and summary lines."""
    from omnimask.data.preprocess import preprocess
    from omnimask.train.pretrain import pretrain

    raw, shards, runs_dir = root / "raw", root / "shards", root / "runs"
    shutil.rmtree(raw, ignore_errors=True)
    n = registry.lookup("modality", name)().example_inputs(raw, num_inputs or demo.count)
    log.info("%s demo: wrote %d input files (%s; a few broken on purpose) to %s", name, n, demo.what, raw)
    manifest = preprocess(name, raw, shards, samples_per_shard=demo.samples_per_shard, overwrite=True)
    # one Ray Train worker with every local CPU, so that torch uses them all
    overrides = [f"data.path={shards}", f"run.dir={runs_dir}", f"scaling.cpus_per_worker={os.cpu_count() or 1}"]
    if steps is not None:
        overrides.append(f"trainer.max_steps={steps}")
    shutil.rmtree(runs_dir / "demo", ignore_errors=True)
    result = pretrain(load_recipe(demo.recipe, overrides), name="demo")
    run = RunDir(result.run_dir)
    return result.run_dir, [
        f"{name} ({demo.recipe})",
        f"  dataset        {shards}: {manifest.num_samples} samples in {len(manifest.shards)} shards, "
        f"{manifest.num_quarantined} quarantined (see quarantine.jsonl)",
        f"  training       {result.steps} steps in {result.seconds:.0f}s, loss {format_loss(result.first_loss)} -> "
        f"{format_loss(result.last_loss)}",
        *([f"  reconstruction {run.preview}  (original | masked | reconstruction)"] if demo.picture else []),
        f"  checkpoints    {result.run_dir}/checkpoint-step*/ (Ray Train); metrics {run.metrics}",
    ]
