"""Graph decoding for the loader: the stored arrays back as a :class:`Graph`."""

from __future__ import annotations

from dataclasses import dataclass

from omnimask.modalities.graph.readers import Graph, read_npz


@dataclass
class GraphAugmentConfig:
    """``data.augment`` for graphs: none so far (GraphMAE pretrains without augmentation)."""


class GraphDecoder:
    """``(members, seed) -> Graph`` from the sample's ``.npz`` (loaded without pickle)."""

    def __call__(self, members: dict[str, bytes], seed: int) -> Graph:
        data = members.get("npz")
        if data is None:
            raise ValueError(f"sample has no npz member (members: {sorted(members)})")
        return read_npz(data).validate()
