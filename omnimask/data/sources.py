"""Finding the raw inputs of a preprocessing job."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


@dataclass(frozen=True)
class InputFile:
    """One raw input: absolute ``path``, ``source`` relative to the input root, class ``label``.

    The label is the sub-folder path (``cats`` for ``cats/1.jpg``), None at the root.
    """

    path: str
    source: str
    label: Optional[str]


def list_inputs(root: str | Path, is_dataset_folder: Optional[Callable[[Path], bool]] = None) -> list[InputFile]:
    """Every file under ``root``, recursively and sorted, following symlinked folders (not cycles).

    Every entry that is not a folder is an input, also broken links, FIFOs and
    files a modality cannot read: those are quarantined with a reason rather
    than skipped, so that every file is accounted for. An unreadable folder is
    an error, not a silent gap. A folder for which ``is_dataset_folder`` says
    yes (a TU graph dataset) is one input, labelled by its parent folder.
    """
    root = Path(root)
    if root.is_file() or (is_dataset_folder is not None and root.is_dir() and is_dataset_folder(root)):
        return [InputFile(str(root.resolve()), root.name, None)]
    if not root.is_dir():
        raise FileNotFoundError(f"input {root} does not exist")
    found = []

    def fail(err: OSError) -> None:
        raise err

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=fail):
        real = os.path.realpath(dirpath)
        if any(os.path.realpath(p) == real for p in Path(dirpath).parents if root in (p, *p.parents)):
            dirnames.clear()  # a link to one of its own ancestors: a cycle, walked once already
            continue
        rel_dir = Path(dirpath).relative_to(root)
        label = None if rel_dir == Path(".") else rel_dir.as_posix()
        if is_dataset_folder is not None:
            datasets = [d for d in dirnames if is_dataset_folder(Path(dirpath, d))]
            dirnames[:] = [d for d in dirnames if d not in datasets]
            found += [InputFile(str(Path(dirpath, d).absolute()), (rel_dir / d).as_posix(), label) for d in datasets]
        for name in filenames:
            found.append(InputFile(str(Path(dirpath, name).absolute()), (rel_dir / name).as_posix(), label))
    return sorted(found, key=lambda f: f.source)
