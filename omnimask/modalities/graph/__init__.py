"""Graph modality (GraphMAE): ingest of per-graph files (npz, node-link JSON, GraphML, GML) and TU-format
dataset folders, each graph validated (``readers.py``, ``ingest.py``), the loader's decoding, the node
tokenizer with attribute, one-hot label or degree features (``tokenizer.py``), and GraphMAE's node
masker and MaskGAE's edge masker (``maskers.py``). The GNN encoders and the decoder head are in
:mod:`omnimask.modalities.graph.model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

from omnimask.core.interfaces import EncodedSample, Modality, QuarantineError, Tokenizer
from omnimask.core.registry import register
from omnimask.modalities.graph.decode import GraphAugmentConfig, GraphDecoder
from omnimask.modalities.graph.ingest import GraphIngestConfig, encode_graph_input
from omnimask.modalities.graph.readers import is_tu_folder
from omnimask.modalities.graph.tokenizer import GraphFeatureTokenizer


@register("modality", "graph")
class GraphModality(Modality):
    """Graphs (NPZ, node-link JSON, GraphML, GML, TU folders): GraphMAE."""

    name = "graph"
    IngestConfig = GraphIngestConfig
    AugmentConfig = GraphAugmentConfig
    tokenizer_types = (GraphFeatureTokenizer,)

    def encode_records(self, path: Path, options: GraphIngestConfig) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
        return encode_graph_input(path, options)

    def holds_many(self, path: Path) -> bool:
        return is_tu_folder(path)

    def is_dataset_folder(self, path: Path) -> bool:
        return is_tu_folder(path)

    def decoder(self, augment: GraphAugmentConfig, tokenizer: Tokenizer) -> GraphDecoder:
        return GraphDecoder()

    def dataset_stats(self, root: Path, tokenizer_params: dict[str, Any], max_samples: Optional[int]) -> dict[str, Any]:
        from omnimask.modalities.graph.stats import graph_stats

        return graph_stats(root, max_samples)

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        from omnimask.modalities.graph.examples import build_demo_graphs

        return build_demo_graphs(out, count, seed=seed)
