"""omnimask: masked-modeling pretraining across modalities, built around its data pipelines.

Layout (docs/ARCHITECTURE.md): ``core`` (interfaces, recipe, config, registry), ``io`` (shards),
``components`` (what modalities share), ``modalities/<name>`` (one folder each), ``weights``, ``data``
(preprocessing, loaders), ``train`` and ``cli``.

The public API below is importable from ``omnimask`` itself; each name is imported on first use, so
``import omnimask`` loads no modality, Ray or Lightning::

    from omnimask import load_recipe, Recipe, recipe_collate
"""

from __future__ import annotations

import importlib
from typing import Any

from omnimask.core.version import __version__

_PUBLIC = {
    "omnimask.core.config": ("load_recipe", "RecipeConfig", "ConfigError"),
    "omnimask.core.recipe": ("Recipe", "MaskedModel"),
    "omnimask.core.collate": ("collate", "recipe_collate"),
    "omnimask.core.interfaces": ("Tokenizer", "Masker", "Target", "Modality", "TokenLayout", "Tokens", "EncodedSample", "QuarantineError"),
    "omnimask.core.networks": ("Encoder", "Head", "Loss", "MaskIndex"),
    "omnimask.core.registry": ("register",),
    "omnimask.core.seeding": ("rng", "derive_seed"),
    "omnimask.data.loader": ("SamplePipeline", "build_loader"),
    "omnimask.data.preprocess": ("preprocess",),
    "omnimask.train.pretrain": ("pretrain",),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = ["__version__", *_MODULE_OF]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'omnimask' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
