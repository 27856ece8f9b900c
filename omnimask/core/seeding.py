"""Explicit, process-independent seeds.

Every random choice in data and masking draws from a generator seeded by
:func:`derive_seed` over a tuple of its causes (run seed, epoch, sample key,
purpose). The result does not depend on Python's per-process ``hash`` salt, on
the number of loader workers or on the rank, so the same sample gets the same
crop and the same mask in any process.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _text(parts: tuple[object, ...]) -> bytes:
    # surrogateescape: a file name that is not UTF-8 (Python's str of it holds surrogates) seeds by its bytes
    return "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogateescape")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of str/int parts (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(_text(parts), digest_size=8).digest(), "little") >> 1


def uniform_words(n: int, *parts: object) -> np.ndarray:
    """``n`` independent uniform 32-bit words ``[n]`` (uint32) drawn from SHAKE-128 over ``parts``.

    The cheap seeded source for what needs a batch of random numbers and nothing else (the
    noise whose argsort is a random mask): a few microseconds, where building a numpy
    Generator costs tens (its SeedSequence), which a loader worker pays on every sample.
    """
    return np.frombuffer(hashlib.shake_128(_text(parts)).digest(4 * n), dtype="<u4")


def rng(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded by :func:`derive_seed` over ``parts``."""
    return np.random.default_rng(derive_seed(*parts))
