"""Video, audio, point-cloud, graph and protein loader throughput: omnimask vs reference-style pipelines,
same files, same workers.

    python -m benchmarks.loader_media [--modality video audio pointcloud graph protein] [--clips 48] [--workers 2] [--batches 10]
                                      [--repeats 4]

Video: ``--clips`` clips of ``--seconds`` at 30 fps, 256x256, H.264 with a keyframe
every 2 s (camera pans over scikit-image's photos), preprocessed as they are. Times
the VideoMAE ViT-B recipe's loader (16 frames at stride 4, multi-scale crop to 224,
2x16x16 tubelets, tube mask 90%, per-channel normalised targets):

- ``omnimask``: the full loader (seek to the clip, decode its frames only, tokenize, mask, target);
- ``omnimask-decode``: the same stream with decode + crop only;
- ``decode-all``: the reference style, decoding every frame of the file then picking
  16 frames (as a loader that reads whole videos, e.g. ``torchvision.io.read_video``);
- ``omnimask-views``: the full loader with ``data.repeats=--repeats`` views of each clip decoded.

Audio: ``--clips`` 10 s clips at 44.1 kHz stereo WAV. Times the AudioMAE ViT-B
recipe's loader (FLAC at 16 kHz from the shards, fbank 1024 x 128, random mask 80%,
norm-pixel target) against ``load+fbank``: AudioMAE's per-item path on the raw file
(read, down-mix, resample to 16 kHz, fbank, normalise), and decode alone.

Point clouds: ``--clips`` shapes of 8192 points as binary PLY. Times the Point-MAE recipe's loader
(1024 points, unit sphere, scale/translate, FPS 64 centres, kNN 32 groups, random mask 60%) against
``read+group``: the same work per raw file (parse the PLY, sample, normalise, FPS, kNN), and decode alone.

Graphs: ``--clips`` graphs (trees, rings, grids, small-world, ...: 6-40 nodes, the size of TU
datasets' graphs) as NPZ. Times the GraphMAE recipe's loader (one-hot degree features, node mask 50%
with 10% replaced, PyG-layout batches) against ``read+mask``: per raw file, ``np.load``, features,
GraphMAE's masking and a ``torch_geometric`` ``Batch``.

Proteins: ``--clips`` x 8 sequences (log-normal lengths, median ~300 residues, as UniRef50) in one
FASTA file. Times the ESM-2 recipe's loader (crop to 1022, ESM tokens, BERT 80/10/10, token-budget
batches of 32768 tokens) against ``in-memory``: the FASTA parsed once into a list (fairseq's
in-memory dataset), per item encoded, cropped and masked, batches of ``--batch-size`` padded.

Every figure is samples/s (and residues or nodes per second for proteins and graphs) after a
warm-up, the best of 3 bursts taken in turn with the other loaders, page cache warm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:  # for the annotations only: at run time omnimask is imported once the path below is set
    from omnimask.core.recipe import Recipe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import decode_only_loader, throughputs_in_turn
from benchmarks.inputs import build_inputs


class DecodeAllVideo(Dataset):
    """Reference-style video item: decode every frame of the raw file, then sample and crop."""

    def __init__(self, files: list[Path], num_frames: int, stride: int, size: int):
        self.files, self.num_frames, self.stride, self.size = files, num_frames, stride, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import av
        from PIL import Image

        from omnimask.modalities.video.decode import frame_indices, multi_scale_crop_box

        with av.open(str(self.files[i])) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        g = np.random.default_rng(i)
        idx = frame_indices(len(frames), self.num_frames, self.stride, g)
        h, w = frames[0].shape[:2]
        left, top, cw, ch = multi_scale_crop_box(w, h, self.size, (1.0, 0.875, 0.75, 0.66), 1, g)
        clip = np.stack(
            [
                np.asarray(Image.fromarray(frames[j]).resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + cw, top + ch)))
                for j in idx
            ]
        )
        return torch.from_numpy(clip), 0


class LoadFbankAudio(Dataset):
    """AudioMAE's per-item path on the raw file: read, mono, resample to 16 kHz, fbank, normalise."""

    def __init__(self, files: list[Path]):
        from omnimask.modalities.audio.tokenizer import AudioFbankTokenizer

        self.files = files
        self.tokenizer = AudioFbankTokenizer(AudioFbankTokenizer.Config())

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import soundfile as sf
        import torchaudio.functional as AF

        wave, sr = sf.read(self.files[i], dtype="float32", always_2d=True)
        return self.tokenizer(AF.resample(torch.from_numpy(wave.mean(1)), sr, 16000)), 0


class ReadGroupPoints(Dataset):
    """Reference-style point-cloud item from the raw file: parse, sample 1024, normalise, FPS + kNN groups."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from omnimask.modalities.pointcloud.geometry import group_points, normalize_unit_sphere
        from omnimask.modalities.pointcloud.readers import read_point_file

        pts = read_point_file(self.files[i], 0, 0)[:, :3]
        pick = np.random.default_rng(i).choice(len(pts), 1024, replace=False)
        groups, _ = group_points(torch.from_numpy(normalize_unit_sphere(pts[pick]))[None], 64, 32)
        return groups[0], 0


class ReadMaskGraphs(Dataset):
    """Reference-style graph item: ``np.load`` the raw NPZ, one-hot degree features, GraphMAE's masking."""

    def __init__(self, files: list[Path], recipe: Recipe) -> None:
        self.files, self.recipe = files, recipe

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from torch_geometric.data import Data

        from omnimask.core.interfaces import TokenLayout
        from omnimask.modalities.graph.readers import graph_from_arrays
        from omnimask.modalities.graph.tokenizer import node_features

        with np.load(self.files[i], allow_pickle=False) as z:
            g = graph_from_arrays({name: z[name] for name in z.files}).validate()
        x = torch.from_numpy(node_features(g, "degree", self.recipe.tokenizer.layout.token_dim))
        mask = torch.as_tensor(self.recipe.masker(TokenLayout((g.num_nodes,), x.shape[1]), i))
        x, _ = self.recipe.masker.corrupt(x, mask, i)
        return Data(x=x, edge_index=torch.from_numpy(g.edge_index), mask=mask)


class InMemoryProteins(Dataset):
    """fairseq-style: every sequence in memory; per item encode, crop to 1022 residues, BERT-mask."""

    def __init__(self, fasta: Path, recipe: Recipe) -> None:
        from omnimask.modalities.protein.fasta import iter_fasta, open_fasta

        with open_fasta(fasta) as stream:
            self.seqs = [record.sequence for record in iter_fasta(stream)]
        self.recipe = recipe

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> dict:
        from omnimask.core.interfaces import TokenLayout

        seq = self.seqs[i]
        if len(seq) > 1022:
            start = np.random.default_rng(i).integers(0, len(seq) - 1022 + 1)
            seq = seq[start : start + 1022]
        tokens = self.recipe.tokenizer(seq)
        mask = self.recipe.masker(TokenLayout((len(tokens),), 1), i)
        tokens, _ = self.recipe.masker.corrupt(tokens, mask, i)
        return {"key": str(i), "tokens": tokens, "target": tokens[mask], "mask": mask}


def prepare(modality: str, args: argparse.Namespace, tmp: Path) -> tuple[list[Path], Path]:
    """Write the raw inputs and preprocess them into shards (call with Ray running, or it starts one)."""
    from omnimask.data.preprocess import preprocess

    raw, shards = tmp / modality / "raw", tmp / modality / "shards"
    raw.mkdir(parents=True)
    if modality == "protein":  # one FASTA file, parsed once by the in-memory baseline
        files = build_inputs(modality, raw, 1, sequences_per_file=8 * args.clips)
    else:
        files = build_inputs(modality, raw, args.clips, args.seconds)
    preprocess(modality, raw, shards, samples_per_shard=16)
    return files, shards


def bench(modality: str, args: argparse.Namespace, files: list[Path], shards: Path) -> list[dict]:
    """Time the three loaders over :func:`prepare`'s inputs. Run it with Ray stopped: loader workers are
    forked from this process, and forking a Ray driver (its core worker's threads and sockets) has crashed
    the raylet here."""
    from omnimask.core.config import DataConfig, load_recipe
    from omnimask.core.recipe import Recipe
    from omnimask.data.loader import build_loader

    recipe_name, overrides, baseline, base_name, base_collate = {
        "video": ("videomae", [], lambda r: DecodeAllVideo(files, 16, 4, 224), "decode-all", None),
        "audio": ("audiomae", [], lambda r: LoadFbankAudio(files), "load+fbank", None),
        "pointcloud": ("pointmae", [], lambda r: ReadGroupPoints(files), "read+group", None),
        "graph": (
            "graphmae",
            ["model.tokenizer.features=degree", "model.tokenizer.dim=64"],
            lambda r: ReadMaskGraphs(files, r),
            "read+mask",
            pyg_batch,
        ),
        "protein": ("esm_mlm", [], lambda r: InMemoryProteins(files[0], r), "in-memory", pad_proteins),
    }[modality]
    recipe = Recipe.from_config(load_recipe(recipe_name, [f"data.path={shards}", *overrides]))
    unit = {"graph": "nodes", "protein": "residues"}.get(modality)
    results = []
    for workers in args.workers:
        common = dict(
            batch_size=args.batch_size, num_workers=workers, persistent_workers=workers > 0, prefetch_factor=4 if workers else None
        )
        budget = recipe.config.data.max_tokens
        loaders = {
            base_name: DataLoader(baseline(recipe), shuffle=True, drop_last=True, collate_fn=base_collate, **common),
            "omnimask-decode": decode_only_loader(recipe, shards, args.batch_size, workers),
            "omnimask": build_loader(
                recipe,
                data=DataConfig(
                    path=shards,
                    batch_size=args.batch_size,
                    num_workers=workers,
                    max_tokens=budget,
                    sort_window=recipe.config.data.sort_window,
                ),
                seed=0,
            ),
        }
        if args.repeats > 1 and modality == "video":  # data.repeats: views of a clip decoded once
            loaders["omnimask-views"] = build_loader(
                recipe, data=DataConfig(path=shards, batch_size=args.batch_size, num_workers=workers, repeats=args.repeats), seed=0
            )
        row: dict = {"modality": modality, "workers": workers, "reference": base_name, "repeats": args.repeats}
        for name, (r, tokens) in throughputs_in_turn(loaders, args.batches).items():
            row[name], row[f"{name} {unit}"] = r, tokens
        row["speedup_vs_reference"] = row["omnimask"] / row[base_name]
        row["mask_target_overhead"] = row["omnimask-decode"] / row["omnimask"] - 1
        results.append(row)
        per_unit = f" ({row['omnimask ' + str(unit)]:.0f} {unit}/s; {base_name} {row[base_name + ' ' + str(unit)]:.0f})" if unit else ""
        print(
            f"{modality} workers={workers}: {base_name} {row[base_name]:.1f}/s | omnimask decode {row['omnimask-decode']:.1f}"
            f"/s | omnimask full {row['omnimask']:.1f}/s{per_unit} | x{row['speedup_vs_reference']:.2f} vs {base_name}"
            f" | tokenize+mask+target overhead {100 * row['mask_target_overhead']:.1f}%"
            + (f" | with data.repeats={args.repeats} {row['omnimask-views']:.1f}/s" if "omnimask-views" in row else ""),
            flush=True,
        )
    return results


def pyg_batch(items: list[Any]) -> dict[str, Any]:
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(items)
    return {"keys": list(range(len(items))), "valid": torch.ones(batch.num_nodes, dtype=torch.bool), "batch": batch}


def pad_proteins(items: list[dict]) -> dict:
    from omnimask.core.collate import collate

    return collate(items, pad_value=1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = ["video", "audio", "pointcloud", "graph", "protein"]
    ap.add_argument("--modality", nargs="+", choices=kinds, default=kinds)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=None, help="clip length (default: 8 s video, 10 s audio)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=4, help="video: also time the full loader with data.repeats=N (1: not)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if "video" in args.modality and args.batch_size % args.repeats:
        ap.error(f"--repeats {args.repeats} must divide --batch-size {args.batch_size}")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from omnimask.data.ray_env import ray_session

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        with ray_session():  # one Ray instance for every preprocessing job
            prepared = {modality: prepare(modality, args, Path(tmp)) for modality in args.modality}
        for modality in args.modality:
            results += bench(modality, args, *prepared[modality])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
