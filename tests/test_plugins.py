"""Plugins: the example package found through its entry points, listed, checked and trained with;
deliberately broken components stopped at the first sample with a message that names them."""

import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import OMNIMASK, logged_losses, run_cli
from omnimask.core.config import DataConfig, load_recipe
from omnimask.core.contracts import ContractError
from omnimask.core.recipe import Recipe
from omnimask.data.loader import build_loader

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_RECIPE = ROOT / "examples" / "ringmask" / "ring_sobel_tiny.yaml"
SMALL = ["model.tokenizer.image_size=32", "model.encoder.depth=1", "model.head.depth=1"]


def test_plugins_lists_the_example_package_with_its_origin_and_parameters(tmp_path):
    out = run_cli(["plugins"], tmp_path).stdout
    assert "ring                 omnimask_ringmask.masks:RingMasker  [omnimask-ringmask 0.1.0 (entry point omnimask.maskers)]" in out
    assert "sobel                omnimask_ringmask.targets:SobelTarget  [omnimask-ringmask 0.1.0 (entry point omnimask.targets)]" in out
    assert "min_radius: float = 0.15  -- Smallest ring radius" in out
    assert "random               omnimask.components.maskers:RandomMasker  [omnimask]" in out  # built-ins too
    for kind in ("tokenizers:", "maskers:", "targets:", "encoders:", "heads:", "modalities:"):
        assert kind in out
    # a modality's preprocess options and augmentation keys, each with its default and help
    assert "-o resize: Optional[int] = None  -- Downscale so that the short side" in out
    assert "data.augment.scale: tuple[float, float] = (0.2, 1.0)  -- Crop area" in out
    assert "-o max_nodes: int | None = 5000000" in out and "data.augment.max_residues: int = 1022" in out


def test_options_lists_every_recipe_key_with_its_help(tmp_path):
    out = run_cli(["options"], tmp_path).stdout
    assert "data.max_tokens: Optional[int] = None  -- Token budget per batch and rank" in out
    assert "optim.blr: float = 0.00015  -- Base learning rate" in out and "model.decoder_masker: Optional[ComponentSpec]" in out
    assert "  modality: str = required" in out
    assert "trainer." not in run_cli(["options", "data"], tmp_path).stdout


def test_check_plugin_runs_the_example_against_the_contract(tmp_path):
    out = run_cli(["check-plugin", "ring", "-p", "ratio=0.5"], tmp_path).stdout
    assert "hidden per sample [32, 32, 32, 32, 32, 32]" in out and "check-plugin OK" in out
    assert "check-plugin OK" in run_cli(["check-plugin", "sobel"], tmp_path).stdout


def test_example_plugin_trains_through_the_cli(image_dataset, tmp_path):
    run_cli(
        [
            "pretrain",
            str(EXAMPLE_RECIPE),
            f"data.path={image_dataset['shards']}",
            *SMALL,
            "data.batch_size=8",
            "trainer.max_steps=8",
            "trainer.log_every_n_steps=2",
            "trainer.checkpoint_every_n_steps=8",
            "--name",
            "ring",
        ],
        tmp_path,
    )
    run_dir = tmp_path / "runs" / "ring"
    config = (run_dir / "config.yaml").read_text()
    assert "name: ring" in config and "name: sobel" in config
    assert (run_dir / "checkpoint-step0000008" / "checkpoint.ckpt").is_file()
    assert all(math.isfinite(x) for x in logged_losses(run_dir)) and len(logged_losses(run_dir)) == 4


def test_a_plugin_parameter_is_checked_like_any_other():
    from omnimask.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"model\.masker\.min_radus: unknown key \(did you mean 'min_radius'\?\)"):
        Recipe.from_config(load_recipe(EXAMPLE_RECIPE, ["model.masker.min_radus=0.2"]))
    with pytest.raises(ConfigError, match=r"model\.masker\.ratio: expected float"):
        Recipe.from_config(load_recipe(EXAMPLE_RECIPE, ["model.masker.ratio=most"]))


def first_batch(image_dataset, *overrides):
    recipe = Recipe.from_config(load_recipe("mae_image_tiny", [*SMALL, *overrides]))
    batch = next(iter(build_loader(recipe, data=DataConfig(path=image_dataset["shards"], batch_size=4, num_workers=0), seed=0)))
    return recipe, batch


@pytest.mark.parametrize(
    "masker,message",
    [
        ("WrongCountMasker", r"masker 'WrongCountMasker' \(broken_plugins.WrongCountMasker\) hid 13 of 16 tokens; its num_masked says 12"),
        (
            "IntMaskMasker",
            r"masker 'IntMaskMasker' \(broken_plugins.IntMaskMasker\) returned int64 \[16\]; expected a bool array or tensor \[16\]",
        ),
    ],
)
def test_a_broken_masker_stops_the_first_batch_with_a_message_naming_it(image_dataset, masker, message):
    with pytest.raises(ContractError, match=message):
        first_batch(image_dataset, f"model.masker={{name: 'broken_plugins:{masker}'}}")


def test_a_broken_target_or_a_head_target_mismatch_is_named(image_dataset):
    with pytest.raises(
        ContractError, match=r"target 'WrongShapeTarget' .* returned \[16, 192\]; expected \[12, \.\.\.\]: one row per predicted"
    ):
        first_batch(image_dataset, "model.target={name: 'broken_plugins:WrongShapeTarget'}")
    recipe, batch = first_batch(image_dataset, "model.target={name: 'broken_plugins:WrongDimTarget'}")
    with pytest.raises(ContractError, match=r"target 'WrongDimTarget' .*finalize gave 192 values per token; its dim says 96"):
        recipe.build_model().loss(batch)
    assert torch.isfinite(Recipe.from_config(load_recipe("mae_image_tiny", SMALL)).build_model().loss(first_batch(image_dataset)[1]))


def test_check_plugin_reports_a_broken_masker(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(Path(__file__).resolve().parent))

    def check(name: str) -> subprocess.CompletedProcess:
        args = [*OMNIMASK, "check-plugin", f"broken_plugins:{name}", "--kind", "masker"]
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    proc = check("WrongCountMasker")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "check-plugin FAILED: masker 'WrongCountMasker' (broken_plugins.WrongCountMasker) hid 49 of 64 tokens" in proc.stdout
    proc = check("RoundingMasker")  # right at the recipe's ratio on every grid: wrong at another ratio
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED: masker 'broken_plugins:RoundingMasker' with ratio=0.1: ContractError: masker 'RoundingMasker'" in proc.stdout
    assert "hid 6 of 64 tokens" in proc.stdout


def test_plugins_name_shows_a_dotted_path_and_refuses_an_unknown_name(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(Path(__file__).resolve().parent))

    def plugins(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*OMNIMASK, "plugins", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    proc = plugins("--name", "broken_plugins:WrongCountMasker")  # imported as a recipe imports it; its kind from its base
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == [
        "maskers:",
        f"  broken_plugins:WrongCountMasker broken_plugins:WrongCountMasker  [dotted path, {Path(__file__).parent / 'broken_plugins.py'}]",
        "      Says it hides ``num_masked`` tokens but hides one more on odd seeds.",
    ]
    assert "      ratio: float = 0.75  -- Share of tokens hidden." in proc.stdout
    proc = plugins("--name", "rnadom")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "omnimask plugins: error: no component is named 'rnadom' (did you mean 'random'?)" in proc.stderr
    proc = plugins("--name", "broken_plugins:Nope", "--kind", "masker")
    assert proc.returncode == 2 and "cannot import masker 'broken_plugins:Nope'" in proc.stderr
    proc = plugins("--name", "broken_plugins:WrongCountMasker", "--kind", "encoder")
    assert proc.returncode == 2 and "'broken_plugins:WrongCountMasker' is a masker" in proc.stderr
    proc = plugins("--name", "os:sep")
    assert proc.returncode == 2 and "'os:sep' is a str, not a class" in proc.stderr
