"""Named registries for the pluggable pieces.

Each kind of piece (tokenizer, masker, target, encoder, head, modality) has a
registry. A component class declares its parameters as a nested ``Config``
dataclass; :func:`build` validates a config section against it (with key-path
errors) and constructs the component::

    @register("masker", "random")
    class RandomMasker(Masker):
        @dataclass
        class Config:
            ratio: float = 0.75
        def __init__(self, cfg: Config, **context): ...

A component name may also be a dotted path (``my_pkg.masks:RingMasker``), so a
user's own class plugs in without being registered in omnimask.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

from omnimask.config import ComponentSpec, ConfigError, _suggest, from_dict

KINDS = ("tokenizer", "masker", "target", "encoder", "head", "modality")
_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}

T = TypeVar("T", bound=type)


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator adding a component under ``kind``/``name``."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {KINDS}")

    def deco(cls: T) -> T:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"{kind} {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
        _REGISTRY[kind][name] = cls
        cls.registry_name = name
        return cls

    return deco


def lookup(kind: str, name: str, path: str = "") -> type:
    """The class registered as ``name`` (or found at dotted path ``module:Class``)."""
    _load_builtins()
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(path, f"cannot import {kind} {name!r}: {e}") from None
    table = _REGISTRY[kind]
    if name not in table:
        raise ConfigError(path, f"unknown {kind} {name!r}{_suggest(name, table)}; available: {sorted(table)}")
    return table[name]


def check(kind: str, spec: ComponentSpec, path: str = "") -> tuple[type, Any]:
    """The component class and its validated ``Config`` (None for a class without one)."""
    cls = lookup(kind, spec.name, f"{path}.name" if path else "name")
    config_cls = getattr(cls, "Config", None)
    if config_cls is None:
        if spec.params:
            raise ConfigError(path, f"{kind} {spec.name!r} takes no parameters, got {sorted(spec.params)}")
        return cls, None
    return cls, from_dict(config_cls, spec.params, path)


def build(kind: str, spec: ComponentSpec, path: str = "", **context: Any) -> Any:
    """Validate ``spec.params`` against the component's ``Config`` and construct it."""
    cls, cfg = check(kind, spec, path)
    return cls(**context) if cfg is None else cls(cfg, **context)


def _load_builtins() -> None:
    """Import the built-in components so that their decorators run."""
    import omnimask.modalities  # noqa: F401
    import omnimask.models  # noqa: F401
