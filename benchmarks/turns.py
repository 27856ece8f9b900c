"""Taking turns: each side of a comparison runs once a round, the order rotating (A B C, B C A, C A B, ...),
so that a slow moment of a shared machine lands on every side alike."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def take_turns(sides: dict[str, Callable[[], T]], rounds: int, warmup: int = 0) -> dict[str, list[T]]:
    """Call every side once a round for ``warmup + rounds`` rounds, each side first in its turn as often as the
    others; returns what each side returned in the ``rounds`` timed rounds, in order."""
    labels = list(sides)
    results: dict[str, list[T]] = {label: [] for label in labels}
    for i in range(warmup + rounds):
        r = i % len(labels)
        for label in labels[r:] + labels[:r]:
            out = sides[label]()
            if i >= warmup:
                results[label].append(out)
    return results
