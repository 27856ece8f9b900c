import subprocess
import sys

import numpy as np
import pytest

from omnimask.components.maskers import RandomMasker
from omnimask.core import registry
from omnimask.core.config import ComponentSpec, ConfigError
from omnimask.core.interfaces import TokenLayout
from omnimask.modalities.image.maskers import BlockMasker, block_mask

LAYOUT = TokenLayout(grid=(14, 14), token_dim=768)


def hidden_neighbour_share(mask: np.ndarray) -> float:
    """Mean share of 4-neighbours that are hidden, over hidden patches."""
    m = mask.reshape(14, 14)
    padded = np.pad(m, 1)
    nb = padded[:-2, 1:-1].astype(int) + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    return float(nb[m].mean() / 4)


@pytest.mark.parametrize("ratio,expected", [(0.75, 147), (0.9, 177), (0.5, 98), (0.6, 118)])
def test_random_mask_exact_count_matches_mae_formula(ratio, expected):
    masker = RandomMasker(RandomMasker.Config(ratio=ratio))
    assert masker.num_masked(LAYOUT) == expected == 196 - int(196 * (1 - ratio))
    for seed in range(20):
        mask = masker(LAYOUT, seed)
        assert mask.dtype == np.bool_ and mask.shape == (196,)
        assert int(mask.sum()) == expected


@pytest.mark.parametrize("ratio", [0.4, 0.3, 0.55])
def test_block_mask_exact_count(ratio):
    masker = BlockMasker(BlockMasker.Config(ratio=ratio))
    n = masker.num_masked(LAYOUT)
    assert n == round(196 * ratio)
    for seed in range(40):
        assert int(masker(LAYOUT, seed).sum()) == n


def test_maskers_are_deterministic_and_seed_dependent():
    for masker in (RandomMasker(RandomMasker.Config()), BlockMasker(BlockMasker.Config())):
        a, b, c = masker(LAYOUT, 7), masker(LAYOUT, 7), masker(LAYOUT, 8)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def test_same_seed_same_mask_in_another_process():
    code = (
        "from omnimask.core.interfaces import TokenLayout;"
        "from omnimask.modalities.image.maskers import BlockMasker;"
        "from omnimask.components.maskers import RandomMasker;"
        "L=TokenLayout((14,14),768);"
        "print(''.join('1' if v else '0' for v in RandomMasker(RandomMasker.Config())(L,123).tolist()));"
        "print(''.join('1' if v else '0' for v in BlockMasker(BlockMasker.Config())(L,123).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    here = [
        "".join("1" if v else "0" for v in RandomMasker(RandomMasker.Config())(LAYOUT, 123).tolist()),
        "".join("1" if v else "0" for v in BlockMasker(BlockMasker.Config())(LAYOUT, 123).tolist()),
    ]
    assert out == here


def test_block_masks_are_made_of_blocks():
    """Block masks cluster: hidden patches have mostly hidden neighbours, unlike random masks
    of the same count, and no hidden patch stands alone."""
    block_share, random_share = [], []
    for seed in range(30):
        m = block_mask((14, 14), 78, seed)
        r = RandomMasker(RandomMasker.Config(ratio=0.4))(LAYOUT, seed)
        grid = m.reshape(14, 14)
        padded = np.pad(grid, 1)
        nb = padded[:-2, 1:-1].astype(int) + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
        assert (nb[grid] > 0).all(), "isolated hidden patch in a block mask"
        block_share.append(hidden_neighbour_share(m))
        random_share.append(hidden_neighbour_share(r))
    assert np.mean(block_share) > 0.7
    assert np.mean(block_share) > np.mean(random_share) + 0.25


def test_block_masker_needs_a_2d_grid():
    with pytest.raises(ValueError, match="2-D"):
        BlockMasker(BlockMasker.Config())(TokenLayout((4, 4, 4), 8), 0)


def test_masker_config_is_validated_with_key_path():
    with pytest.raises(ConfigError, match=r"model.masker.ratio"):
        registry.build("masker", ComponentSpec("random", {"ratio": "lots"}), "model.masker")
    with pytest.raises(ConfigError, match=r"model.masker.ration.*did you mean 'ratio'"):
        registry.build("masker", ComponentSpec("random", {"ration": 0.5}), "model.masker")
    with pytest.raises(ConfigError, match="must be in"):
        registry.build("masker", ComponentSpec("random", {"ratio": 1.5}), "model.masker")
