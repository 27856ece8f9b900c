"""Point cloud (Point-MAE): group tokens with centres, random and block masks, the Chamfer head,
preprocessing generated shapes with broken files, and the tiny recipe trained through the CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import pretrain_briefly, run_cli
from omnimask.components.maskers import RandomMasker
from omnimask.core.config import DataConfig, load_recipe
from omnimask.core.interfaces import TokenLayout
from omnimask.core.networks import MaskIndex
from omnimask.core.recipe import Recipe
from omnimask.data.loader import build_loader
from omnimask.io.manifest import read_quarantine
from omnimask.modalities.pointcloud.examples import build_demo_shapes, primitive
from omnimask.modalities.pointcloud.geometry import chamfer_distance, farthest_point_sample
from omnimask.modalities.pointcloud.maskers import PointBlockMasker
from omnimask.modalities.pointcloud.tokenizer import PointGroupTokenizer

LAYOUT = TokenLayout((64,), 96)


def test_group_tokens_are_recentred_neighbourhoods_of_fps_centres():
    pts = primitive("torus", np.random.default_rng(0), 1024)
    tok = PointGroupTokenizer(PointGroupTokenizer.Config())
    out = tok(pts)
    tokens, coords = out.values, out.coords
    assert tokens.shape == (64, 96) and coords.shape == (64, 3) and tokens.dtype == torch.float32
    t = torch.from_numpy(pts)
    assert torch.equal(coords, t[farthest_point_sample(t[None], 64)[0]])
    groups = tokens.reshape(64, 32, 3) + coords[:, None]
    for g in (0, 17, 63):  # each group: the 32 points nearest to its centre
        nearest = torch.cdist(coords[g : g + 1], t)[0].argsort()[:32]
        assert torch.allclose(groups[g], t[nearest], atol=1e-6)
    again = tok(pts)
    assert torch.equal(again.values, tokens) and torch.equal(again.coords, coords)
    bad = pts.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tok(bad)


def test_random_and_block_masks_hide_int_ratio_groups():
    assert RandomMasker(RandomMasker.Config(ratio=0.6, count="mask")).num_masked(LAYOUT) == 38  # Point-MAE: int(0.6 * 64)
    assert RandomMasker(RandomMasker.Config(ratio=0.6)).num_masked(LAYOUT) == 39  # MAE's rounding keeps int(0.4 * 64)
    coords = PointGroupTokenizer(PointGroupTokenizer.Config())(primitive("box", np.random.default_rng(1), 1024)).coords
    block = PointBlockMasker(PointBlockMasker.Config(ratio=0.6))
    starts = set()
    for seed in range(10):
        mask = block(LAYOUT, seed, coords)
        assert int(mask.sum()) == 38 and torch.equal(mask, block(LAYOUT, seed, coords))
        # a block: the hidden groups are exactly the 38 nearest to one of the centres
        d = torch.cdist(coords, coords)
        origins = [c for c in range(64) if mask[c] and d[c][mask].max() <= d[c][~mask].min()]
        assert origins, "the hidden groups are not the nearest ones to any centre"
        starts.add(origins[0])
    assert len(starts) > 3
    with pytest.raises(ValueError, match="needs the token coordinates"):
        block(LAYOUT, 0)


def test_chamfer_head_loss_and_shapes():
    recipe = Recipe.from_config(load_recipe("pointmae_tiny", ["model.encoder.depth=1", "model.head.depth=1"]))
    model = recipe.build_model()
    g = np.random.default_rng(2)
    tok = recipe.tokenizer
    samples = [tok(primitive(k, g, 512)) for k in ("sphere", "cone")]
    tokens = torch.stack([s.values for s in samples])
    coords = torch.stack([s.coords for s in samples])
    mask = torch.stack([torch.as_tensor(recipe.masker(tok.layout, i)) for i in range(2)])
    index = MaskIndex.from_mask(mask, int(mask[0].sum()), coords=coords)
    pred = model(tokens, index)
    assert pred.shape == (2, 19, 48)
    target = torch.stack([recipe.target(tokens[i], mask[i]) for i in range(2)])
    loss = model.loss_fn(pred, recipe.target.finalize(target))
    manual = chamfer_distance(pred.reshape(-1, 16, 3), target.reshape(-1, 16, 3)).mean()
    assert torch.allclose(loss, manual)
    with pytest.raises(ValueError, match="needs token coordinates"):
        model(tokens, MaskIndex.from_mask(mask, 19))


def test_pointmae_tiny_preprocesses_and_pretrains_through_the_cli(tmp_path):
    n = build_demo_shapes(tmp_path / "raw", 40, seed=3)
    out = run_cli(
        [
            "preprocess",
            "pointcloud",
            "--input",
            "raw",
            "--output",
            "shards",
            "--samples-per-shard",
            "10",
            "--num-cpus",
            "2",
            "-o",
            "mesh_points=2048",
        ],
        tmp_path,
    ).stdout
    assert f"{n} inputs -> 40 samples" in out and "3 quarantined" in out
    reasons = {q["source"]: q["reason"] for q in read_quarantine(tmp_path / "shards")}
    assert (
        reasons
        == {
            "broken/empty.ply": "empty file",
            "broken/nan.npy": "NaN or infinite coordinates",
            "broken/words.xyz": reasons["broken/words.xyz"],
        }
        and "unparsable .xyz" in reasons["broken/words.xyz"]
    )
    recipe = Recipe.from_config(load_recipe("pointmae_tiny", ["model.masker.name=point_block"]))
    b = next(iter(build_loader(recipe, data=DataConfig(path=tmp_path / "shards", batch_size=4, num_workers=0), seed=0, epochs=1)))
    assert b["tokens"].shape == (4, 32, 48) and b["coords"].shape == (4, 32, 3) and b["num_hidden"] == 19
    run_dir = pretrain_briefly("pointmae_tiny", "shards", tmp_path, batch_size=8)
    grid = Image.open(run_dir / "reconstruction.png")
    assert grid.size == (3 * (128 + 2) + 2, 4 * (128 + 2) + 2)  # original | masked | reconstruction, 4 shapes
