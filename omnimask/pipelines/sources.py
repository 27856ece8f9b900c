"""Finding the raw inputs of a preprocessing job."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class InputFile:
    """One raw input: absolute ``path``, ``source`` relative to the input root, class ``label``.

    The label is the sub-folder path (``cats`` for ``cats/1.jpg``), None at the root.
    """

    path: str
    source: str
    label: Optional[str]


def list_inputs(root: str | Path) -> list[InputFile]:
    """Every regular file under ``root`` (recursively, sorted, symlinks to files included).

    All files are inputs: those a modality cannot read are quarantined with a
    reason rather than skipped, so every file is accounted for.
    """
    root = Path(root)
    if root.is_file():
        return [InputFile(str(root.resolve()), root.name, None)]
    if not root.is_dir():
        raise FileNotFoundError(f"input {root} does not exist")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        label = None if rel_dir == Path(".") else rel_dir.as_posix()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                found.append(InputFile(str(path.resolve()), (rel_dir / name).as_posix(), label))
    return sorted(found, key=lambda f: f.source)
