"""Moved to :mod:`omnimask.core.seeding`; this import path stays for plugins written against it."""

from omnimask.core.seeding import derive_seed, rng, uniform_words

__all__ = ["derive_seed", "rng", "uniform_words"]
