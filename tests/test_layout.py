"""The package layout holds: imports run one way, every built-in is in the registry's table, naming a
component imports only its own module, and the old import paths plugins use still work."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omnimask.core import registry

PACKAGE = Path(__file__).resolve().parent.parent / "omnimask"

LAYERS = {
    "omnimask.core": {"omnimask.core"},
    "omnimask.io": {"omnimask.core", "omnimask.io"},
    "omnimask.components": {"omnimask.core", "omnimask.components"},
    "omnimask.modalities": {"omnimask.core", "omnimask.io", "omnimask.components"},  # + the modality's own folder
    "omnimask.weights": {"omnimask.core", "omnimask.components", "omnimask.modalities", "omnimask.weights"},
    "omnimask.data": {"omnimask.core", "omnimask.io", "omnimask.data"},
    "omnimask.train": {"omnimask.core", "omnimask.io", "omnimask.components", "omnimask.data", "omnimask.weights", "omnimask.train"},
    "omnimask.cli": {"omnimask"},
    # the old import paths, kept as re-exports for plugins
    "omnimask.models": {"omnimask.core"},
    "omnimask.seeding": {"omnimask.core"},
}
"""What each layer may import (by module prefix): core <- io <- data; core <- components <- modalities;
weights, train and cli on top. Imports inside functions count: deferring an import does not change its direction."""


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every omnimask import in the file (``from omnimask.core import registry`` gives
    ``omnimask.core.registry``; relative imports resolved against ``name``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return [(line, m) for line, m in out if m == "omnimask" or m.startswith("omnimask.")]


def layer_of(name: str) -> str | None:
    return max((layer for layer in LAYERS if name == layer or name.startswith(layer + ".")), key=len, default=None)


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def upward_imports(root: Path) -> list[str]:
    """Every import in the package ``root`` that its layer may not make, as ``file:line: a -> b``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        layer = layer_of(name)
        if layer is None:
            if name != "omnimask":  # the package root re-exports the public API lazily (omnimask.__getattr__)
                found.append(f"{path.relative_to(root.parent)}: module {name} is in no layer (add it to LAYERS)")
            continue
        allowed = set(LAYERS[layer])
        if layer == "omnimask.modalities" and name.count(".") >= 2:
            allowed.add(".".join(name.split(".")[:3]))  # its own modality's folder, not another modality's
        for line, target in imported_modules(path, name):
            if target == "omnimask.core.version" or any(within(target, a) for a in allowed):
                continue
            found.append(f"{path.relative_to(root.parent)}:{line}: {name} -> {target}")
    return found


def test_imports_run_one_way():
    assert upward_imports(PACKAGE) == []


def test_the_import_check_finds_a_planted_upward_import(tmp_path):
    """The check is not vacuous: a core module that imports the data layer (inside a function) is caught,
    and so is one modality importing another's module."""
    copy = tmp_path / "omnimask"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.yaml"))
    with open(copy / "core" / "collate.py", "a") as f:
        f.write("\n\ndef planted():\n    from omnimask.data.loader import SamplePipeline\n    return SamplePipeline\n")
    with open(copy / "modalities" / "video" / "tokenizer.py", "a") as f:
        f.write("\nfrom omnimask.modalities.image.tokenizer import ImagePatchTokenizer\n")
    found = upward_imports(copy)
    assert len(found) == 2, found
    assert "omnimask.core.collate -> omnimask.data.loader.SamplePipeline" in found[0]
    assert "omnimask.modalities.video.tokenizer -> omnimask.modalities.image.tokenizer" in found[1]


def registered_in_source() -> dict[str, dict[str, str]]:
    """``kind -> name -> module`` of every ``@register(kind, name)`` decorator in the package's source."""
    table: dict[str, dict[str, str]] = {kind: {} for kind in registry.KINDS}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "register":
                        kind, name = (a.value for a in deco.args)
                        table[kind][name] = module_name(path, PACKAGE)
    return table


def test_the_builtin_table_names_every_registered_component_and_its_module():
    assert registry.BUILTINS == registered_in_source()


LAZY_CHECK = """
import json, sys, tempfile
from pathlib import Path
import torch
# what the driver and every worker of an image run import
import omnimask.cli.main, omnimask.train.pretrain, omnimask.train.worker, omnimask.data.preprocess
import omnimask.data.ray_ingest
from omnimask.cli.check_plugin import generated_samples
from omnimask.core.collate import recipe_collate
from omnimask.core.config import load_recipe
from omnimask.data.loader import SamplePipeline
from omnimask.train.module import MaskedModelingModule
from omnimask.train.pretrain import check_recipe

recipe = check_recipe(load_recipe("mae_image_tiny", ["model.masker={name: block}"]))
with tempfile.TemporaryDirectory() as tmp:
    samples = generated_samples("image", 4, Path(tmp))
pipeline = SamplePipeline(recipe, seed=0, strict=True)
batch = recipe_collate(recipe)([pipeline(key, members, 0) for key, members in samples])
module = MaskedModelingModule(recipe, global_batch_size=4)
module.model.loss(batch).backward()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("av", "torchaudio", "soundfile")
                        or m.startswith("omnimask.modalities."))))
"""


def test_an_image_run_imports_no_other_modality():
    """Naming a component imports its own module only: building, feeding and stepping an image model (block
    masking, a component the image folder registers) loads neither PyAV, torchaudio nor soundfile, nor any
    other modality's code."""
    out = subprocess.run([sys.executable, "-c", LAZY_CHECK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    old_paths = {"omnimask.modalities.base", "omnimask.modalities.targets"}  # the example plugin's imports
    assert "omnimask.modalities.image.maskers" in loaded
    assert sorted(m for m in loaded - old_paths if not m.startswith("omnimask.modalities.image")) == []


def test_old_import_paths_still_work():
    from omnimask import seeding as old_seeding
    from omnimask.components import targets
    from omnimask.core import interfaces, networks, seeding
    from omnimask.modalities import base as old_base
    from omnimask.modalities import targets as old_targets
    from omnimask.models import base as old_models_base

    assert old_base.Masker is interfaces.Masker and old_base.Target is interfaces.Target
    assert old_models_base.Encoder is networks.Encoder and old_models_base.MaskIndex is networks.MaskIndex
    assert old_seeding.rng is seeding.rng and old_targets.hidden_tokens is targets.hidden_tokens


@pytest.mark.parametrize("kind", ["masker", "target"])
def test_an_unknown_name_lists_the_builtins_not_yet_imported(kind):
    from omnimask.core.config import ComponentSpec, ConfigError

    with pytest.raises(ConfigError, match="available: .*") as e:
        registry.build(kind, ComponentSpec("no_such_component"), f"model.{kind}")
    assert all(name in str(e.value) for name in registry.BUILTINS[kind])


def test_the_public_api_resolves_and_import_omnimask_stays_light():
    code = (
        "import json, sys, omnimask; light = sorted(m for m in ('torch', 'ray', 'pytorch_lightning') if m in sys.modules); "
        "missing = [n for n in omnimask.__all__ if getattr(omnimask, n, None) is None]; "
        "print(json.dumps([light, missing, omnimask.load_recipe('mae_image_tiny').modality]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout) == [[], [], "image"]
