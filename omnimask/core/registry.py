"""Named registries for the pluggable pieces.

Each kind of piece (tokenizer, masker, target, encoder, head, loss, modality) has a
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

- the built-in components register themselves when their module is imported; :data:`BUILTINS`
  names each one's module, so looking a name up imports that module only (an image run never
  imports PyAV or torchaudio), and a test checks the table against the decorators;
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

from omnimask.core.config import ComponentSpec, ConfigError, from_dict, suggest

KINDS = ("tokenizer", "masker", "target", "encoder", "head", "loss", "modality")
PLURALS = {kind: {"loss": "losses", "modality": "modalities"}.get(kind, f"{kind}s") for kind in KINDS}
"""Each kind's plural, as listings and entry-point groups spell it."""
ENTRY_POINT_GROUPS = {kind: f"omnimask.{PLURALS[kind]}" for kind in KINDS}
_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}

_C, _M = "omnimask.components", "omnimask.modalities"
BUILTINS: dict[str, dict[str, str]] = {
    "tokenizer": {
        "image_patches": f"{_M}.image.tokenizer",
        "video_tubelets": f"{_M}.video.tokenizer",
        "audio_fbank": f"{_M}.audio.tokenizer",
        "point_groups": f"{_M}.pointcloud.tokenizer",
        "graph_features": f"{_M}.graph.tokenizer",
        "esm": f"{_M}.protein.tokenizer",
    },
    "masker": {
        "random": f"{_C}.maskers",
        "block": f"{_M}.image.maskers",
        "tube": f"{_M}.video.maskers",
        "running_cell": f"{_M}.video.maskers",
        "time_freq": f"{_M}.audio.maskers",
        "point_block": f"{_M}.pointcloud.maskers",
        "graphmae": f"{_M}.graph.maskers",
        "edge_random": f"{_M}.graph.maskers",
        "bert": f"{_M}.protein.maskers",
    },
    "target": {name: f"{_C}.targets" for name in ("pixels", "norm_pixels", "channel_norm_pixels", "points", "node_features", "token_ids")},
    "encoder": {"vit": f"{_C}.encoders", "pointmae": f"{_M}.pointcloud.model", "gnn": f"{_M}.graph.model", "esm": f"{_M}.protein.model"},
    "head": {
        "mae_decoder": f"{_C}.heads",
        "pointmae_decoder": f"{_M}.pointcloud.model",
        "graphmae_decoder": f"{_M}.graph.model",
        "lm_head": f"{_M}.protein.model",
    },
    "loss": {
        **{name: f"{_C}.losses" for name in ("mse", "l1", "smooth_l1", "cross_entropy")},
        "chamfer": f"{_M}.pointcloud.model",
        "sce": f"{_M}.graph.model",
    },
    "modality": {name: f"{_M}.{name}" for name in ("image", "video", "audio", "pointcloud", "graph", "protein")},
}
"""The module that registers each built-in component, by kind and name (imported on first lookup)."""


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
    load_entry_points()
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(path, f"cannot import {kind} {name!r}: {e}") from None
    table = _REGISTRY[kind]
    if name not in table and name in BUILTINS[kind]:
        importlib.import_module(BUILTINS[kind][name])
    if name not in table:
        broken = _BROKEN[kind].get(name)
        if broken is not None:
            raise ConfigError(path, f"{kind} {name!r} from {broken.source} failed to load: {broken.error}")
        names = set(table) | set(BUILTINS[kind])
        raise ConfigError(path, f"unknown {kind} {name!r}{suggest(name, names)}; available: {sorted(names)}")
    return table[name]


def available(kind: str) -> dict[str, tuple[type, Origin]]:
    """Every registered ``kind`` by name: its class and origin (entry points included); imports every
    built-in of ``kind``."""
    load_entry_points()
    for module in sorted(set(BUILTINS[kind].values())):
        importlib.import_module(module)
    return {name: (cls, _ORIGINS[kind][name]) for name, cls in sorted(_REGISTRY[kind].items())}


def broken(kind: str) -> dict[str, Origin]:
    """Entry points of ``kind`` that failed to load, with the reason."""
    load_entry_points()
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


def load_entry_points() -> None:
    """Load the plugins' entry points (once per process). A built-in's name wins over a plugin's:
    the built-in's module is imported first, so a clash is reported, not silently shadowed."""
    global _loaded
    if _loaded:
        return
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
            if ep.name in BUILTINS[kind]:
                importlib.import_module(BUILTINS[kind][ep.name])
            existing = _REGISTRY[kind].get(ep.name)
            if existing is not None and existing is not cls:
                _BROKEN[kind][ep.name] = Origin(
                    origin.source, f"the name is taken by {_ORIGINS[kind][ep.name].source}'s {existing.__module__}:{existing.__qualname__}"
                )
                continue
            _REGISTRY[kind][ep.name] = cls
            _ORIGINS[kind][ep.name] = origin
            cls.registry_name = ep.name
