"""Realistic raw inputs for the benchmarks, written on the spot (no downloads).

Images: ImageNet-sized JPEGs (about 450x365) cut from scikit-image's photos. Video:
256x256 H.264 camera pans at 30 fps with a keyframe every 2 s. Audio: 44.1 kHz
stereo WAV. Point clouds: 8192-point binary PLY. Graphs: 6-40 node NPZ graphs.
Proteins: FASTA with log-normal lengths (median ~300 residues, as UniRef50).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image


def build_jpegs(root: Path, n: int, seed: int = 0) -> None:
    from omnimask.components.photos import load_photos

    g = np.random.default_rng(seed)
    photos = load_photos()
    names = sorted(photos)
    for i in range(n):
        name = names[i % len(names)]
        img = Image.fromarray(photos[name])
        w, h = int(g.integers(400, 520)), int(g.integers(330, 400))
        side = min(img.size)
        left, top = int(g.integers(0, img.width - side + 1)), int(g.integers(0, img.height - side + 1))
        img = img.resize((w, h), Image.BICUBIC, box=(left, top, left + side, top + side))
        (root / name).mkdir(parents=True, exist_ok=True)
        img.save(root / name / f"{i:05d}.jpg", quality=90)


def build_inputs(modality: str, raw: Path, count: int, seconds: Optional[float] = None, sequences_per_file: int = 400) -> list[Path]:
    """``count`` inputs of ``modality`` in ``raw`` (proteins: ``count`` FASTA files of ``sequences_per_file``
    sequences); clips last ``seconds`` (default 8 s video, 10 s audio). Returns the paths."""
    g = np.random.default_rng(0)
    seconds = seconds or (8.0 if modality == "video" else 10.0)

    if modality == "image":
        build_jpegs(raw, count)
        return sorted(raw.rglob("*.jpg"))
    if modality == "graph":
        from omnimask.modalities.graph.examples import demo_graph, plain

        for i in range(count):
            graph = plain(demo_graph(i, g))
            edges = np.array(list(graph.edges), dtype=np.int64).reshape(-1, 2).T
            np.savez(
                raw / f"g{i:05d}.npz", edge_index=np.concatenate([edges, edges[::-1]], axis=1), num_nodes=np.array(graph.number_of_nodes())
            )
    elif modality == "protein":
        from omnimask.modalities.protein.examples import FREQUENCIES, RESIDUES

        p = FREQUENCIES / FREQUENCIES.sum()
        for k in range(count):
            lengths = np.clip(g.lognormal(np.log(300), 0.6, sequences_per_file).astype(int), 20, 5000)
            with open(raw / f"uniref_like{k:03d}.fasta", "w") as f:
                for i, n in enumerate(lengths):
                    f.write(f">seq{k}_{i}\n" + "".join(g.choice(list(RESIDUES), n, p=p)) + "\n")
    elif modality == "video":
        from omnimask.components.photos import load_photos
        from omnimask.modalities.video.examples import moving_clip, write_video

        photos = load_photos()
        names = sorted(photos)
        for i in range(count):
            write_video(
                raw / f"clip{i:04d}.mp4",
                moving_clip(photos[names[i % len(names)]], int(30 * seconds), 256, g),
                fps=30,
                gop=60,
                reproducible=False,
            )  # 3x faster; bytes may differ between runs
    elif modality == "pointcloud":
        from omnimask.modalities.pointcloud.examples import KINDS, primitive, write_ply

        for i in range(count):
            write_ply(raw / f"shape{i:04d}.ply", primitive(KINDS[i % len(KINDS)], g, 8192))
    else:
        from omnimask.modalities.audio.examples import synth, write_audio

        kinds = ["tone", "chirp", "notes", "bursts"]
        for i in range(count):
            x = synth(kinds[i % 4], seconds, 44100, g)
            write_audio(raw / f"sound{i:04d}.wav", np.stack([x, 0.8 * x], 1), 44100)
    return sorted(raw.iterdir())
