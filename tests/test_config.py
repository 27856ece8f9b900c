import os

import pytest
import yaml

from omnimask.core.config import ConfigError, load_recipe, to_dict
from omnimask.core.recipe import Recipe


def test_shipped_recipes_load_and_build(tmp_path):
    for name in ("mae_image", "mae_image_tiny", "mae_image_block"):
        cfg = load_recipe(name)
        recipe = Recipe.from_config(cfg)
        assert recipe.tokenizer.layout.num_tokens > 0
    base = load_recipe("mae_image")
    assert base.model.tokenizer.params == {"image_size": 224, "patch_size": 16}
    assert base.model.masker.params["ratio"] == 0.75
    assert base.optim.betas == (0.9, 0.95) and base.optim.weight_decay == 0.05 and base.optim.blr == 1.5e-4
    assert base.model.head.params == {"dim": 512, "depth": 8, "heads": 16}


def test_base_include_and_overrides():
    cfg = load_recipe("mae_image_tiny", ["trainer.max_steps=7", "data.path=/x", "optim.lr=1e-3"])
    assert cfg.trainer.max_steps == 7 and cfg.data.path == "/x" and cfg.optim.lr == 1e-3
    assert cfg.model.tokenizer.params["patch_size"] == 8  # from tiny
    assert cfg.model.head.params["heads"] == 4
    assert cfg.optim.betas == (0.9, 0.95)  # from the base
    assert cfg.model.target.name == "pixels" and cfg.model.target.params == {}


def test_unknown_key_has_path_and_suggestion():
    with pytest.raises(ConfigError, match=r"data\.batch_sise: unknown key \(did you mean 'batch_size'\?\)"):
        load_recipe("mae_image_tiny", ["data.batch_sise=3"])
    with pytest.raises(
        ConfigError,
        match=r"optim\.speed: unknown key \(known keys: betas, blr, grad_clip, lr, min_lr, "
        r"warmup_steps, weight_decay\)",
    ):
        load_recipe("mae_image_tiny", ["optim.speed=3"])  # nothing close: every key of the section


def test_wrong_type_has_path():
    with pytest.raises(ConfigError, match=r"trainer\.max_steps: expected int"):
        load_recipe("mae_image_tiny", ["trainer.max_steps=many"])
    with pytest.raises(ConfigError, match=r"trainer\.precision: must be one of"):
        load_recipe("mae_image_tiny", ["trainer.precision=fp8"])
    with pytest.raises(ConfigError, match=r"data\.batch_size: must be > 0"):
        load_recipe("mae_image_tiny", ["data.batch_size=0"])


def test_repeated_views_need_whole_groups_and_the_torch_loader():
    assert load_recipe("videomae_tiny", ["data.batch_size=8", "data.repeats=4"]).data.repeats == 4
    with pytest.raises(ConfigError, match=r"data\.repeats: 3 must divide data\.batch_size \(8\)"):
        load_recipe("videomae_tiny", ["data.batch_size=8", "data.repeats=3"])
    with pytest.raises(ConfigError, match=r"data\.repeats: repeated views need data\.loader=torch"):
        load_recipe("videomae_tiny", ["data.batch_size=8", "data.repeats=2", "data.loader=ray"])
    with pytest.raises(ConfigError, match=r"data\.repeats: must be > 0"):
        load_recipe("videomae_tiny", ["data.repeats=0"])


def test_component_params_are_checked_when_building():
    cfg = load_recipe("mae_image_tiny", ["model.encoder.sise=tiny"])
    with pytest.raises(ConfigError, match=r"model\.encoder\.sise: unknown key \(did you mean 'size'\?\)"):
        Recipe.from_config(cfg).build_model()
    cfg = load_recipe("mae_image_tiny", ["model.masker.name=randon"])
    with pytest.raises(ConfigError, match=r"unknown masker 'randon' \(did you mean 'random'\?\)"):
        Recipe.from_config(cfg)
    cfg = load_recipe("mae_image_tiny", ["data.augment.scale=[0.5, 0.1]"])
    with pytest.raises(ConfigError, match=r"data\.augment"):
        Recipe.from_config(cfg)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_recipe("mae_image_tiny", ["data.path=/data"])
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_recipe(path) == cfg


def test_merging_keeps_non_component_sections_and_switching_a_component_drops_its_params(tmp_path):
    derived = tmp_path / "derived.yaml"
    derived.write_text("base: mae_image_tiny\nrun: {name: mine}\nmodel:\n  masker: block\n")
    cfg = load_recipe(derived)
    assert cfg.run.name == "mine" and cfg.run.dir == "runs"  # run.name is not a component name
    assert cfg.model.masker.name == "block" and cfg.model.masker.params == {}
    cfg = load_recipe("mae_image_block", ["model.masker.name=random"])
    assert cfg.model.masker.params == {}  # block's min_patches does not leak into random
    cfg = load_recipe(derived, ["model.masker.ratio=0.5"])  # shorthand `masker: block` takes params
    assert cfg.model.masker.params == {"ratio": 0.5}


def test_precision_resolves_per_device_and_warns_of_emulated_bf16_on_the_cpu(caplog):
    from omnimask.train.worker import cpu_has_bf16, resolve_precision

    auto = load_recipe("mae_image_tiny")
    assert resolve_precision(auto, "gpu") == "bf16-mixed" and resolve_precision(auto, "cpu") == "32-true"
    assert "emulated" not in caplog.text
    bf16 = load_recipe("mae_image_tiny", ["trainer.precision=bf16-mixed"])
    with caplog.at_level("WARNING", logger="omnimask.train"):
        assert resolve_precision(bf16, "cpu") == "bf16-mixed"
    assert ("bf16 matrix products are emulated" in caplog.text) == (not cpu_has_bf16())


def test_an_installed_wheel_finds_the_built_in_recipes_by_name(tmp_path):
    """The recipes are package data: a plain (not editable) install of the wheel loads them by name."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    src, site = tmp_path / "src", tmp_path / "site"
    shutil.copytree(repo / "omnimask", src / "omnimask", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("omnimask-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    code = (
        "import json, omnimask, omnimask.core.config as c; print(json.dumps({'package': omnimask.__file__, "
        "'modality': c.load_recipe('mae_image').modality, 'recipes': sorted(c.recipe_files())}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(site)}
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert Path(found["package"]).is_relative_to(site) and found["modality"] == "image"
    assert found["recipes"] == sorted(p.stem for p in (repo / "omnimask" / "modalities").glob("*/recipes/*.yaml"))


def test_a_run_config_written_before_a_key_was_removed_still_loads(tmp_path, caplog):
    """Every run's config.yaml lists every key: one from before trainer.accelerator went must still load."""
    old = to_dict(load_recipe("mae_image_tiny"))
    old["trainer"]["accelerator"] = "auto"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    with caplog.at_level("WARNING", logger="omnimask.core.config"):
        cfg = load_recipe(tmp_path / "config.yaml")
    assert to_dict(cfg) == to_dict(load_recipe("mae_image_tiny"))
    assert "ignoring trainer.accelerator: omnimask no longer has it" in caplog.text
    with pytest.raises(ConfigError, match=r"trainer\.accelerator: unknown key"):
        load_recipe("mae_image_tiny", ["trainer.accelerator=gpu"])  # a new setting of it is still an error
