"""Typed configuration: dataclasses built from YAML with key-path errors.

A recipe is a YAML file whose sections map onto the dataclasses below. Loading
checks every key and type, so a typo fails at start-up with its full path and a
suggestion instead of deep inside a run::

    config error at data.batch_sise: unknown key (did you mean 'batch_size'?)

Component sections (``model.tokenizer``, ``model.masker``, ...) are
``{name: ..., <params>}`` mappings; their params are validated later against the
component's own ``Config`` dataclass by :mod:`omnimask.core.registry`.

A recipe may start with ``base: other.yaml`` (a path relative to the file, or a
recipe name) and override any key of it; command-line overrides use dotted keys
(``trainer.max_steps=50``) and are applied last.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

log = logging.getLogger("omnimask.core.config")
MODALITIES_DIR = Path(__file__).resolve().parent.parent / "modalities"
"""Each built-in modality keeps its recipes in ``<modality>/recipes/*.yaml`` (package data, installed with omnimask)."""


def recipe_files() -> dict[str, Path]:
    """Every built-in recipe file by name (its stem)."""
    return {p.stem: p for p in sorted(MODALITIES_DIR.glob("*/recipes/*.yaml"))}


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; names the key path."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"config error at {path or '<root>'}: {message}")


class ArgumentError(ValueError):
    """A command's arguments cannot work together (e.g. a preprocessing output inside its input); raised
    before anything is written."""


# --------------------------------------------------------------------------- schema


@dataclass
class ComponentSpec:
    """A pluggable piece: registry ``name`` plus its own parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """The four modules of a masked-modeling method (masker, target, encoder, head), the tokenizer and the loss."""

    tokenizer: ComponentSpec
    masker: ComponentSpec
    target: ComponentSpec
    encoder: ComponentSpec
    head: ComponentSpec
    loss: Optional[ComponentSpec] = None
    """The loss of the head's predictions against the targets (``mse``, ``l1``, ``smooth_l1``, ``chamfer``,
    ``sce``, ``cross_entropy``: ``omnimask plugins --kind loss``). None: the head's own default (MAE's
    ``mse``, Point-MAE's ``chamfer``, GraphMAE's ``sce`` with ``model.head.gamma``, ESM's ``cross_entropy``)."""
    decoder_masker: Optional[ComponentSpec] = None
    """Optional second masker for the decoder (VideoMAE V2's dual masking, e.g. ``running_cell``):
    the head predicts, and the loss covers, only the hidden tokens this masker leaves visible."""
    edge_masker: Optional[ComponentSpec] = None
    """Optional masker over a graph's edges (MaskGAE-style, e.g. ``edge_random``): the encoder
    sees the graph without the edges it hides; the head sees every edge."""
    init: Optional[str] = None
    """Start from these weights instead of a random initialisation: a checkpoint in the reference
    repository's own layout (a released MAE/AudioMAE/VideoMAE/Point-MAE/ESM-2/GraphMAE file, or
    ``omnimask export --format reference``). The run's log lists the tensors loaded, missing and
    unexpected; a resumed run continues from its own checkpoint instead."""


@dataclass
class DataConfig:
    """Where the shards are, how samples are batched, read and augmented."""

    path: Optional[str] = None
    """Shard directory written by ``omnimask preprocess`` (holds manifest.json)."""
    batch_size: int = 64
    """Samples per batch on each rank."""
    num_workers: int = 2
    """DataLoader worker processes per rank."""
    shuffle_window: int = 4
    """Shards whose samples are shuffled together in the global order (1: shuffle within each shard)."""
    augment: dict[str, Any] = field(default_factory=dict)
    """Modality-specific augmentation parameters (image: scale, ratio, hflip, interpolation); every
    modality's keys: ``omnimask plugins --kind modality`` (``data.augment.*``) and docs/modalities.md."""
    prefetch_factor: int = 4
    """Batches each DataLoader worker keeps ready ahead of the step."""
    pin_memory: bool = True
    """Copy batches into page-locked memory, for non-blocking copies to the GPU (GPU runs only)."""
    verify_shards: bool = False
    """Check each shard's sha256 against the manifest the first time a loader worker reads it."""
    strict: bool = False
    """Fail on a sample that cannot be decoded, instead of logging it and replacing it by a neighbour."""
    loader: Literal["torch", "ray"] = "torch"
    """``torch``: DataLoader workers on each trainer; ``ray``: Ray Data tasks anywhere in the cluster."""
    max_tokens: Optional[int] = None
    """Token budget per batch and rank (variable-length samples): each batch holds as many samples as
    fit ``samples x longest <= max_tokens``, grouped by length. ``batch_size`` then only sets the learning
    rate (``blr x batch_size x ranks / 256``; or give ``optim.lr``) and the count in the run's log line."""
    sort_window: int = 1024
    """With ``max_tokens``: positions of the epoch order sorted by length together before batching."""
    repeats: int = 1
    """Views per sample read (repeated augmentation, as DeiT's): each sample read gives ``repeats`` samples
    of the batch in a row, each with its own crop, flip and mask, and the decoder shares what it can
    between them (a video's frames are decoded once, so its views share one time window, where MAE-ST's
    repeated sampling also varies the window). Cuts the loader's decoding per training sample by
    ``repeats`` where decoding starves the device. Positions count samples read: a run can resume with
    another value."""
    trace: bool = False
    """Write ``trace-rank{R}.jsonl`` (one line per sample consumed: step, rank, index, key) to the run."""

    def __post_init__(self) -> None:
        _positive("data.batch_size", self.batch_size)
        _non_negative("data.num_workers", self.num_workers)
        _positive("data.shuffle_window", self.shuffle_window)
        _positive("data.prefetch_factor", self.prefetch_factor)
        _positive("data.sort_window", self.sort_window)
        if self.max_tokens is not None:
            _positive("data.max_tokens", self.max_tokens)
            if self.loader == "ray":
                raise ConfigError("data.max_tokens", "token-budget batches need data.loader=torch (Ray Data batches by count)")
        _positive("data.repeats", self.repeats)
        if self.repeats > 1:
            if self.loader == "ray" or self.max_tokens is not None:
                raise ConfigError("data.repeats", "repeated views need data.loader=torch and batches by count (no data.max_tokens)")
            if self.batch_size % self.repeats:
                raise ConfigError(
                    "data.repeats", f"{self.repeats} must divide data.batch_size ({self.batch_size}): a batch holds whole groups of views"
                )


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule (linear warm-up, then half-cycle cosine to ``min_lr``)."""

    blr: float = 1.5e-4
    """Base learning rate; the actual lr is ``blr * global_batch / 256`` (MAE)."""
    lr: Optional[float] = None
    """Absolute learning rate; overrides ``blr`` when set."""
    min_lr: float = 0.0
    """Where the cosine schedule ends."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW's betas (MAE: 0.9, 0.95)."""
    weight_decay: float = 0.05
    """AdamW's decoupled weight decay, on every parameter but biases and norms (1-D)."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0 to the learning rate."""
    grad_clip: Optional[float] = None
    """Clip the gradients' global norm to this (None: no clipping)."""

    def __post_init__(self) -> None:
        _positive("optim.blr", self.blr)
        if self.lr is not None:
            _positive("optim.lr", self.lr)
        _non_negative("optim.min_lr", self.min_lr)
        _non_negative("optim.warmup_steps", self.warmup_steps)
        for i, b in enumerate(self.betas):
            if not 0.0 <= b < 1.0:
                raise ConfigError(f"optim.betas[{i}]", f"must be in [0, 1), got {b}")


@dataclass
class TrainerConfig:
    """How long to train, how often to log and checkpoint, precision and compilation (the device: ``scaling.use_gpu``)."""

    max_steps: int = 1000
    """Optimizer steps of the run (the schedule's length)."""
    log_every_n_steps: int = 10
    """Steps between progress lines and metrics rows (loss, lr, samples/s, ETA); a shorter run logs its last step."""
    checkpoint_every_n_steps: int = 500
    """Steps between checkpoints (and at the last step); a failed or stopped run resumes from the latest."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints Ray Train keeps."""
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    """``auto``: bf16 autocast on a GPU, fp32 on the CPU."""
    compile: bool = False
    """Compile the model's loss with ``torch.compile`` (inductor): fuses the element-wise work around
    the matrix products; costs a compilation (tens of seconds) at the start, and again for each new
    batch shape. See docs/performance.md."""
    retain_freed_memory_mb: int = 1024
    """Each training process keeps up to this much freed host memory for reuse rather than returning it to
    the kernel (glibc only; 0: the C library's defaults), so that steps stop page-faulting their buffers
    afresh, which speeds up a small model's CPU step. See :mod:`omnimask.train.allocator`."""
    cpu_batch_parts: int = 1
    """On the CPU, compute each batch as up to this many parts at once, one thread per part with its share of
    the intra-op threads (:mod:`omnimask.train.batch_parts`): the same loss and gradients, and on 2 cores a faster
    step for a small model such as the tiny MAE, where small products and Python dispatch leave cores idle; slower
    for ViT-B at batch 8. Needs a head whose loss is a per-sample mean on grid batches. With ``compile`` the
    compiled loss runs on the whole batch (the parts run eagerly)."""
    preview_samples: int = 8
    """Samples shown in the reconstruction grid written at the end of training."""
    fail_at_step: Optional[int] = None
    """Fault-tolerance drill: rank 0 raises once at this step (the run must recover from its checkpoint)."""

    def __post_init__(self) -> None:
        _positive("trainer.max_steps", self.max_steps)
        _positive("trainer.log_every_n_steps", self.log_every_n_steps)
        _positive("trainer.checkpoint_every_n_steps", self.checkpoint_every_n_steps)
        _positive("trainer.keep_checkpoints", self.keep_checkpoints)
        _non_negative("trainer.retain_freed_memory_mb", self.retain_freed_memory_mb)
        _positive("trainer.cpu_batch_parts", self.cpu_batch_parts)


@dataclass
class ScalingConfig:
    """How many Ray Train workers (one DDP rank each) and what each asks Ray for."""

    num_workers: int = 1
    """Ray Train workers, one DDP rank each."""
    use_gpu: Optional[bool] = None
    """One GPU per worker; default: when the Ray cluster has GPUs."""
    cpus_per_worker: float = 1.0
    """CPUs each worker asks Ray for (its loader workers run inside them); 0.5 lets Ray Data tasks run beside
    two workers on a 2-CPU machine."""
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    """Extra Ray resources per worker, e.g. {"accelerator_type:H100": 0.01}."""

    def __post_init__(self) -> None:
        _positive("scaling.num_workers", self.num_workers)
        _non_negative("scaling.cpus_per_worker", self.cpus_per_worker)


@dataclass
class RunConfig:
    """Where a run writes (config, logs, metrics, previews) and keeps its checkpoints; failures to survive."""

    dir: str = "runs"
    """Parent directory of run directories (relative to the working directory): config, logs, previews."""
    name: Optional[str] = None
    """Run name (``--name`` overrides it); a timestamp when unset. A resume needs the name."""
    storage: Optional[str] = None
    """Where Ray Train persists checkpoints: a path or a pyarrow/fsspec URI (s3://...); default: ``dir``."""
    max_failures: int = 0
    """Worker failures to recover from (restarting from the latest checkpoint); -1: no limit."""


@dataclass
class RecipeConfig:
    """A whole pretraining recipe: what ``omnimask pretrain CONFIG`` loads."""

    modality: str
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    seed: int = 0
    """Seeds the weights, the shard order, every crop and mask: the same seed gives the same run."""
    description: str = ""
    """One line on what the recipe is (shown in the run's log)."""


# --------------------------------------------------------------------------- loading


def load_recipe(source: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Load a recipe YAML (a path, or the name of a built-in recipe in ``omnimask/modalities/*/recipes/``), apply overrides, validate."""
    raw = drop_removed_keys(load_yaml_with_base(resolve_recipe_path(source)))
    for item in overrides or []:
        apply_override(raw, item)
    return from_dict(RecipeConfig, raw)


REMOVED_KEYS = {"trainer.accelerator": "nothing read it; scaling.use_gpu picks the device"}
"""Keys an earlier omnimask had (and wrote into every run's config.yaml), dropped with a warning when loaded."""


def drop_removed_keys(raw: dict[str, Any]) -> dict[str, Any]:
    for dotted, why in REMOVED_KEYS.items():
        section, key = dotted.split(".")
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raw[section].pop(key)
            log.warning("ignoring %s: omnimask no longer has it (%s)", dotted, why)
    return raw


def resolve_recipe_path(source: str | Path) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    files = recipe_files()
    name = str(source).removesuffix(".yaml")
    if name in files:
        return files[name]
    raise FileNotFoundError(f"no recipe file or name {str(source)!r}; built-in recipes ({MODALITIES_DIR}/*/recipes): {sorted(files)}")


def builtin_recipes(modality: Optional[str] = None) -> list[str]:
    """Names of the built-in recipes, those for ``modality`` only where given."""
    paths = recipe_files().values()
    return [p.stem for p in paths if modality is None or load_yaml_with_base(p).get("modality") == modality]


def load_yaml_with_base(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in _seen:
        raise ConfigError("base", f"recipe include cycle: {' -> '.join(map(str, (*_seen, path)))}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = path.parent / base if (path.parent / base).is_file() else resolve_recipe_path(base)
    return deep_merge(load_yaml_with_base(base_path, (*_seen, path)), data)


def deep_merge(base: dict[str, Any], update: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Recursive dict merge; values of ``update`` win. A ``model.*`` component whose
    ``name`` changes is replaced whole, since its params belong to the old component."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        if path == "model":
            old, value = _component_dict(old, key), _component_dict(value, key)
            if isinstance(old, dict) and isinstance(value, dict) and value.get("name", old.get("name")) != old.get("name"):
                out[key] = value
                continue
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = deep_merge(old, value, _join(path, key))
        else:
            out[key] = value
    return out


MODEL_VALUES = ("init",)
"""Keys of the ``model`` section that are plain values, not components."""


def _component_dict(value: Any, key: str = "") -> Any:
    """A component written as a bare name (``masker: random``) as its mapping form."""
    return {"name": value} if isinstance(value, str) and key not in MODEL_VALUES else value


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` override (value parsed as YAML) in place.

    ``model.<component>.name=other`` switches the component and drops the old
    component's parameters, as a recipe's ``base`` merge does.
    """
    if "=" not in item:
        raise ConfigError(item, "overrides take the form dotted.key=value")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    value = yaml.safe_load(text) if text.strip() else None
    update: Any = value
    for part in reversed(parts):
        update = {part: update}
    if len(parts) == 3 and parts[0] == "model" and parts[2] == "name":
        update = {"model": {parts[1]: {"name": value}}}
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if i == 1 and parts[0] == "model":
            child = _component_dict(child, part)
        if child is not None and not isinstance(child, dict):
            raise ConfigError(".".join(parts[: i + 1]), f"is a value, not a section; cannot set {key}")
        node = child if child is not None else {}
    raw.update(deep_merge(raw, update))


def to_dict(obj: Any) -> Any:
    """A dataclass config as plain YAML-ready data (components flattened back)."""
    if isinstance(obj, ComponentSpec):
        return {"name": obj.name, **obj.params}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types recursively."""
    if cls is ComponentSpec:
        return _component_from(data, path)
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(_join(path, key), f"unknown key{suggest(key, fields) or _known(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in data:
            kwargs[name] = coerce(hints[name], data[name], key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key_path, "missing required key")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(path, str(e)) from None


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against type annotation ``tp``; convert where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, path)
            except ConfigError:
                continue
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(path, f"must be one of {list(args)}, got {value!r}{suggest(str(value), map(str, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(path, f"expected {len(args)} values, got {len(value)}")
            return tuple(coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        seq = [coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _component_from(data: Any, path: str) -> ComponentSpec:
    if isinstance(data, str):
        return ComponentSpec(name=data)
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(path, "expected a component mapping with a 'name' key")
    params = {k: v for k, v in data.items() if k != "name"}
    return ComponentSpec(name=str(data["name"]), params=params)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def suggest(key: str, choices: Any) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known(keys: Any) -> str:
    keys = sorted(keys)
    return f" (known keys: {', '.join(keys)})" if keys else " (this section takes no keys)"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _positive(path: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(path, f"must be > 0, got {value}")


def _non_negative(path: str, value: float) -> None:
    if value < 0:
        raise ConfigError(path, f"must be >= 0, got {value}")
