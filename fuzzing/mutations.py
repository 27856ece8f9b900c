"""Seeded mutations of real input files: what a hostile or unlucky user hands ``omnimask preprocess``.

Each mutation is a pure function ``(data, rng) -> (data, what)``: the same bytes and generator state
give the same mutant, so a mutant is regenerated from ``(modality, seed, index)`` alone. ``what``
says in a few words what was done (a report names it with the mutant that broke something).
"""

from __future__ import annotations

import gzip
import re
import zlib
from typing import Callable

import numpy as np

Mutation = Callable[[bytes, np.random.Generator], tuple[bytes, str]]

HOSTILE_INTS = (0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**40, 2**63 - 1)
"""Values a header field is rewritten to: zero, one, the edges of signed and unsigned widths, huge."""
HOSTILE_NUMBERS = ("0", "-1", "-2147483648", "4294967295", "99999999999", "1e308", "nan", "inf", "3.5", "")
"""What a decimal number in a text header (PLY, OFF, TU, a JSON count) is rewritten to."""
HEADER_BYTES = 512
"""Where binary header fields are looked for: the first bytes of a file."""


def truncate(data: bytes, g: np.random.Generator) -> tuple[bytes, str]:
    """Cut the file at a random offset (anywhere, also inside the header)."""
    at = int(g.integers(0, max(1, len(data))))
    return data[:at], f"truncated at {at} of {len(data)}"


def flip_bytes(data: bytes, g: np.random.Generator) -> tuple[bytes, str]:
    """Overwrite 1-16 random bytes with random values (half of them in the header)."""
    out = bytearray(data)
    if not out:
        return data, "flip (empty)"
    count = int(g.integers(1, 17))
    for i in range(count):
        end = min(len(out), HEADER_BYTES) if i % 2 == 0 else len(out)
        out[int(g.integers(0, end))] = int(g.integers(0, 256))
    return bytes(out), f"{count} bytes flipped"


def duplicate_chunk(data: bytes, g: np.random.Generator) -> tuple[bytes, str]:
    """Copy a random slice (up to 4 KiB) to a random place."""
    if not data:
        return data, "duplicate (empty)"
    start = int(g.integers(0, len(data)))
    size = int(g.integers(1, min(4096, len(data) - start) + 1))
    at = int(g.integers(0, len(data) + 1))
    return data[:at] + data[start : start + size] + data[at:], f"{size} bytes from {start} copied to {at}"


def drop_chunk(data: bytes, g: np.random.Generator) -> tuple[bytes, str]:
    """Remove a random slice (up to 4 KiB)."""
    if not data:
        return data, "drop (empty)"
    start = int(g.integers(0, len(data)))
    size = int(g.integers(1, min(4096, len(data) - start) + 1))
    return data[:start] + data[start + size :], f"{size} bytes dropped at {start}"


def rewrite_binary_field(data: bytes, g: np.random.Generator) -> tuple[bytes, str]:
    """Overwrite a 2-, 4- or 8-byte field near the start with a hostile value, little or big endian
    (a frame count, a chunk size, a sample rate, an array dimension: whatever lies there)."""
    width = int(g.choice([2, 4, 8]))
    if len(data) < width:
        return data, "field (too short)"
    at = int(g.integers(0, min(len(data), HEADER_BYTES) - width + 1))
    value = int(g.choice(HOSTILE_INTS)) % (1 << (8 * width))
    order = "little" if g.random() < 0.5 else "big"
    return data[:at] + value.to_bytes(width, order) + data[at + width :], f"{width}-byte field at {at} = {value} ({order})"


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")


def rewrite_text_number(data: bytes, g: np.random.Generator) -> tuple[bytes, str]:
    """Replace one decimal number among the first KiB with a hostile one (a PLY vertex count, an OFF
    face count, a shape in an ``.npy`` header, a node id); a binary file without one gets a field rewrite."""
    numbers = list(_NUMBER.finditer(data[:1024]))
    if not numbers:
        return rewrite_binary_field(data, g)
    m = numbers[int(g.integers(0, len(numbers)))]
    new = str(g.choice(HOSTILE_NUMBERS)).encode()
    return data[: m.start()] + new + data[m.end() :], f"number {m.group().decode()!r} at {m.start()} -> {new.decode()!r}"


def inside_gzip(data: bytes, g: np.random.Generator) -> tuple[bytes, str]:
    """Mutate the decompressed content of a gzip file and compress it again (reaches the parser behind it);
    a file that is not gzip gets a random other mutation."""
    if data[:2] != b"\x1f\x8b":
        return pick(g)(data, g)
    try:
        inner = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):  # already broken by an earlier step
        return flip_bytes(data, g)
    inner, what = pick(g, exclude=(inside_gzip,))(inner, g)
    return gzip.compress(inner, mtime=0), f"inside gzip: {what}"


MUTATIONS: tuple[Mutation, ...] = (
    truncate,
    flip_bytes,
    duplicate_chunk,
    drop_chunk,
    rewrite_binary_field,
    rewrite_text_number,
    inside_gzip,
)


def pick(g: np.random.Generator, exclude: tuple[Mutation, ...] = ()) -> Mutation:
    """One of :data:`MUTATIONS`, uniformly (less ``exclude``)."""
    choices = [m for m in MUTATIONS if m not in exclude]
    return choices[int(g.integers(0, len(choices)))]


def mutate(data: bytes, g: np.random.Generator, max_steps: int = 3) -> tuple[bytes, list[str]]:
    """Apply 1 to ``max_steps`` random mutations in turn; returns the mutant and what was done."""
    steps = []
    for _ in range(int(g.integers(1, max_steps + 1))):
        data, what = pick(g)(data, g)
        steps.append(what)
    return data, steps
