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

Three ways in, none of which needs an edit to omnimask:

- the built-in components register themselves when :mod:`omnimask.modalities` and
  :mod:`omnimask.models` are imported;
- a package declares Python entry points in the groups of :data:`ENTRY_POINT_GROUPS`
  (``omnimask.maskers``: ``ring = "my_pkg.masks:RingMasker"``); they are loaded, and
  registered under the entry point's name, the first time a name is looked up;
- a config names a class by dotted path (``my_pkg.masks:RingMasker``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from omnimask.config import ComponentSpec, ConfigError, suggest, from_dict

KINDS = ("tokenizer", "masker", "target", "encoder", "head", "modality")
ENTRY_POINT_GROUPS = {kind: f"omnimask.{kind}s" if kind != "modality" else "omnimask.modalities" for kind in KINDS}
_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}


@dataclass(frozen=True)
class Origin:
    """Where a registered component comes from: ``builtin``, or the entry point's distribution."""

    source: str
    """``omnimask`` for built-ins, else ``<distribution> <version> (entry point <group>)``."""
    error: Optional[str] = None
    """Why an entry point could not be loaded (its name then fails on lookup with this reason)."""


_ORIGINS: dict[str, dict[str, Origin]] = {kind: {} for kind in KINDS}
_BROKEN: dict[str, dict[str, Origin]] = {kind: {} for kind in KINDS}
_loaded = False

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
        _ORIGINS[kind].setdefault(name, Origin("omnimask" if cls.__module__.startswith("omnimask.") else cls.__module__))
        cls.registry_name = name
        return cls

    return deco


def lookup(kind: str, name: str, path: str = "") -> type:
    """The class registered as ``name`` (or found at dotted path ``module:Class``)."""
    load_all()
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(path, f"cannot import {kind} {name!r}: {e}") from None
    table = _REGISTRY[kind]
    if name not in table:
        broken = _BROKEN[kind].get(name)
        if broken is not None:
            raise ConfigError(path, f"{kind} {name!r} from {broken.source} failed to load: {broken.error}")
        raise ConfigError(path, f"unknown {kind} {name!r}{suggest(name, table)}; available: {sorted(table)}")
    return table[name]


def available(kind: str) -> dict[str, tuple[type, Origin]]:
    """Every registered ``kind`` by name: its class and origin (entry points included)."""
    load_all()
    return {name: (cls, _ORIGINS[kind][name]) for name, cls in sorted(_REGISTRY[kind].items())}


def broken(kind: str) -> dict[str, Origin]:
    """Entry points of ``kind`` that failed to load, with the reason."""
    load_all()
    return dict(_BROKEN[kind])


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


def load_all() -> None:
    """Import the built-in components (their decorators register them), then the entry points."""
    global _loaded
    if _loaded:
        return
    import omnimask.modalities  # noqa: F401
    import omnimask.models  # noqa: F401

    _loaded = True
    for kind, group in ENTRY_POINT_GROUPS.items():
        for ep in importlib.metadata.entry_points(group=group):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
            origin = Origin(f"{dist} (entry point {group})")
            try:
                cls = ep.load()
            except Exception as e:  # a broken plugin must not take the others down: it fails when it is used
                _BROKEN[kind][ep.name] = Origin(origin.source, f"{type(e).__name__}: {e}")
                continue
            existing = _REGISTRY[kind].get(ep.name)
            if existing is not None and existing is not cls:
                _BROKEN[kind][ep.name] = Origin(origin.source, f"the name is taken by {_ORIGINS[kind][ep.name].source}'s "
                                                               f"{existing.__module__}:{existing.__qualname__}")
                continue
            _REGISTRY[kind][ep.name] = cls
            _ORIGINS[kind][ep.name] = origin
            cls.registry_name = ep.name
