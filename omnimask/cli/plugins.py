"""What components are available, where each comes from, and its parameters (``omnimask plugins``)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from dataclasses import dataclass
from typing import Any, Optional

from omnimask.core import registry
from omnimask.core.config import ArgumentError, suggest


@dataclass(frozen=True)
class Field:
    """One parameter of a component's ``Config``: name, type, default (``required`` if none), help text."""

    name: str
    type: str
    default: str
    help: str


@dataclass(frozen=True)
class Component:
    """One registered component as ``omnimask plugins`` shows it."""

    kind: str
    name: str
    target: str
    """``module:Class``: what a config can also name by dotted path."""
    origin: str
    fields: tuple[Field, ...]
    summary: str
    """The first paragraph of the class docstring."""
    error: Optional[str] = None


def field_help(config_cls: type) -> dict[str, str]:
    """The string literal after each field of a dataclass, its help text (``{}`` when the source is unavailable)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(config_cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    helps: dict[str, str] = {}
    for stmt, after in zip(body, body[1:] + [None]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            helps[stmt.target.id] = " ".join(after.value.value.split())
    return helps


def config_fields(cls: type) -> tuple[Field, ...]:
    """The parameters of a component class (its ``Config`` dataclass), in declaration order."""
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return ()
    return dataclass_fields(config_cls)


def modality_fields(cls: type) -> tuple[Field, ...]:
    """A modality's ingest options (``omnimask preprocess -o KEY=VALUE``, shown as ``-o KEY``) and augmentation
    parameters (``data.augment.KEY``), in declaration order."""
    out: list[Field] = []
    for prefix, attr in (("-o ", "IngestConfig"), ("data.augment.", "AugmentConfig")):
        config_cls = getattr(cls, attr, None)
        if config_cls is not None and dataclasses.is_dataclass(config_cls):
            out += [dataclasses.replace(f, name=prefix + f.name) for f in dataclass_fields(config_cls)]
    return tuple(out)


def dataclass_fields(config_cls: type) -> tuple[Field, ...]:
    """The fields of a config dataclass with type, default and help text."""
    helps = field_help(config_cls)
    hints = _resolved_hints(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        out.append(Field(f.name, type_label(hints.get(f.name, f.type)), default, helps.get(f.name, "")))
    return tuple(out)


def type_label(tp: Any) -> str:
    """``int``, ``Optional[int]``, ``Literal['keep', 'mask']``: a type as a config author reads it."""
    import typing

    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None").replace("omnimask.core.config.", "")


def summary(cls: type) -> str:
    """The first paragraph of a class docstring, on one line."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")  # its own, not a base class's
    return " ".join(doc.split("\n\n", 1)[0].split())


def _resolved_hints(cls: type) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: show them as written
        return {}


def component(kind: str, name: str, cls: type, origin: str) -> Component:
    """Component ``cls``, known as ``name``, with its parameters and summary."""
    fields = modality_fields(cls) if kind == "modality" else config_fields(cls)
    return Component(kind, name, f"{cls.__module__}:{cls.__qualname__}", origin, fields, summary(cls))


def components(kind: Optional[str] = None) -> list[Component]:
    """Every component (of ``kind``), entry-point plugins and ones that failed to load included."""
    out = []
    for k in registry.KINDS if kind is None else (kind,):
        out += [component(k, name, cls, origin.source) for name, (cls, origin) in registry.available(k).items()]
        for name, origin in registry.broken(k).items():
            out.append(Component(k, name, "?", origin.source, (), "", origin.error))
    return out


def components_named(name: str, kind: Optional[str] = None) -> list[Component]:
    """``omnimask plugins --name NAME``: the components (of ``kind``) registered as ``name``, or the class at dotted
    path ``module:Class``, imported as a recipe imports it. An unknown name raises, suggesting a close one."""
    if ":" in name:
        cls = registry.lookup(kind or "component", name, "--name")  # a dotted path: kind only words the error
        if not inspect.isclass(cls):
            raise ArgumentError(f"{name!r} is a {type(cls).__name__}, not a class")
        derived = kind_of(cls)
        if kind is not None and derived is not None and derived != kind:
            raise ArgumentError(f"{name!r} is a {derived} (it derives from omnimask's {derived} base class), not a {kind}")
        kind = kind or derived
        if kind is None:
            raise ArgumentError(f"{name!r} derives from none of omnimask's component base classes: say which kind it is with --kind")
        where = getattr(inspect.getmodule(cls), "__file__", None) or cls.__module__
        return [component(kind, name, cls, f"dotted path, {where}")]
    items = components(kind)
    found = [c for c in items if c.name == name]
    if not found:
        kinds = f" --kind {kind}" if kind else ""
        raise ArgumentError(
            f"no {kind or 'component'} is named {name!r}{suggest(name, sorted({c.name for c in items}))}; "
            f"`omnimask plugins{kinds} --brief` lists them"
        )
    return found


def kind_of(cls: Any) -> Optional[str]:
    """The kind whose base class (``Masker``, ``Encoder``, ...) ``cls`` derives from; None for none."""
    from omnimask.core.interfaces import Masker, Modality, Target, Tokenizer
    from omnimask.core.networks import Encoder, Head, Loss

    bases = {
        "tokenizer": Tokenizer,
        "masker": Masker,
        "target": Target,
        "encoder": Encoder,
        "head": Head,
        "loss": Loss,
        "modality": Modality,
    }
    if not inspect.isclass(cls):
        return None
    return next((k for k, base in bases.items() if issubclass(cls, base)), None)


def describe(items: list[Component], verbose: bool = True) -> str:
    """Text for ``omnimask plugins``: one block per component, its parameters indented below."""
    lines = []
    for kind in registry.KINDS:
        group = [c for c in items if c.kind == kind]
        if not group:
            continue
        lines.append(f"{registry.PLURALS[kind]}:")
        for c in group:
            if c.error:
                lines.append(f"  {c.name:<20} BROKEN  from {c.origin}: {c.error}")
                continue
            lines.append(f"  {c.name:<20} {c.target}  [{c.origin}]")
            if verbose and c.summary:
                lines.append(f"      {c.summary}")
            for f in c.fields if verbose else ():
                lines.append(f"      {f.name}: {f.type} = {f.default}" + (f"  -- {f.help}" if f.help else ""))
    return "\n".join(lines)


def config_sections(section: Optional[str] = None) -> str:
    """Every key of a recipe, by section, with its type, default and help text (``omnimask options``)."""
    from omnimask.core.config import RecipeConfig

    hints = _resolved_hints(RecipeConfig)
    sections = {f.name: hints[f.name] for f in dataclasses.fields(RecipeConfig) if dataclasses.is_dataclass(hints.get(f.name))}
    line = lambda prefix, f: f"  {prefix}{f.name}: {f.type} = {f.default}" + (f"  -- {f.help}" if f.help else "")  # noqa: E731  (a one-line format for the lists below)
    lines = []
    if section in (None, "recipe"):
        lines.append("recipe (top level; `base: other.yaml` starts from another recipe and overrides it):")
        lines += [line("", f) for f in dataclass_fields(RecipeConfig) if f.name not in sections]
    for name, cls in sections.items():
        if section in (None, name):
            lines.append(f"{name}:  {summary(cls)}")
            lines += [line(f"{name}.", f) for f in dataclass_fields(cls)]
    if section in (None, "model"):
        lines.append("  (each model.* entry is {name: <component>, <its parameters>}: `omnimask plugins` lists them)")
    return "\n".join(lines)
