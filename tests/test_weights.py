"""Weights out and back in: ``omnimask export --format reference`` writes the reference repository's
checkpoint, and ``model.init`` starts a model from it with the same weights and the same loss."""

from __future__ import annotations

import pytest
import torch
import yaml

from omnimask.cli.main import main
from omnimask.core.config import ConfigError, load_recipe, to_dict
from omnimask.core.recipe import Recipe

RECIPES = ["mae_image_tiny", "audiomae_tiny", "videomae_tiny", "pointmae_tiny", "graphmae_tiny", "esm_mlm_tiny"]


def fake_run(tmp_path, name: str, overrides: list[str] = ()) -> tuple[Recipe, dict[str, torch.Tensor]]:
    """A run directory as ``omnimask pretrain`` leaves it: config.yaml and a Lightning checkpoint whose
    ``state_dict`` holds the model under ``model.``."""
    torch.manual_seed(1)
    cfg = load_recipe(name, list(overrides))
    recipe = Recipe.from_config(cfg)
    state = recipe.build_model().state_dict()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    (tmp_path / "run" / "checkpoint-step0000003").mkdir()
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 3},
        tmp_path / "run" / "checkpoint-step0000003" / "checkpoint.ckpt",
    )
    return recipe, state


@pytest.mark.parametrize("name", RECIPES)
def test_export_then_init_gives_the_same_weights_and_loss(tmp_path, capsys, name):
    from benchmarks.train_step import real_batch
    from omnimask.train.module import MaskedModelingModule

    recipe, state = fake_run(tmp_path, name)
    assert main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 0
    path = next((tmp_path / "out").glob("*.pth"))
    assert str(path) in capsys.readouterr().out
    from omnimask.weights import load_reference_file

    assert isinstance(load_reference_file(path), dict)  # loads with weights_only=True

    torch.manual_seed(2)  # other random weights, replaced by the file's
    started = MaskedModelingModule(Recipe.check(load_recipe(name, [f"model.init={path}"])), global_batch_size=2)
    report = started.init_report
    assert report.unexpected == [] and report.mismatched == [] and report.missing == []
    loaded = started.model.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    torch.manual_seed(0)
    batch = real_batch(recipe, 2)
    original = recipe.build_model()
    original.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(started.model.eval().loss(batch), original.eval().loss(batch))


def test_export_refuses_a_run_without_a_checkpoint(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(to_dict(load_recipe("mae_image_tiny"))))
    assert main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err


def test_init_reports_what_the_file_lacks_and_what_it_has_extra(tmp_path):
    """A released MAE file holds the encoder only (``mae_pretrain_vit_base.pth``): the decoder is reported
    missing and kept as initialised; a key omnimask has no place for is reported, not loaded."""
    from omnimask.weights import layout_for, load_init

    recipe, state = fake_run(tmp_path, "mae_image_tiny")
    layout = layout_for(recipe)
    reference = layout.to_reference(state, recipe)
    encoder_only = {k: v for k, v in reference.items() if not k.startswith(("decoder", "mask_token"))}
    encoder_only["head.weight"] = torch.zeros(3)  # a fine-tuning head: nothing in pretraining takes it
    path = tmp_path / "encoder.pth"
    torch.save({"model": encoder_only}, path)
    torch.manual_seed(5)
    model = recipe.build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_init(model, recipe, path)
    assert report.unexpected == ["head.weight"]
    assert report.missing and all(k.startswith("head.") for k in report.missing)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in report.missing)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in report.loaded)
    assert "missing (kept as initialised)" in report.summary() and "unexpected (ignored): head.weight" in report.summary()


def test_init_is_checked_before_a_run_starts(tmp_path):
    from omnimask.train.pretrain import check_recipe

    with pytest.raises(ConfigError, match="model.init.*no such file"):
        check_recipe(load_recipe("mae_image_tiny", [f"model.init={tmp_path / 'missing.pth'}"]))


def test_export_refuses_a_model_the_reference_code_would_compute_differently(tmp_path, capsys):
    """AudioMAE adds its own (swapped) position table: weights trained with the geometric one would give other
    outputs in its code, so the export says so instead of writing a file that loads but computes wrongly."""
    fake_run(tmp_path, "audiomae_tiny", ["model.encoder.positions=grid", "model.head.positions=grid"])
    assert main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 2
    assert "positions is 'grid'" in capsys.readouterr().err and not (tmp_path / "out").exists()
