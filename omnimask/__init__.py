"""omnimask: masked-modeling pretraining across modalities, built around its data pipelines.

Layout (see docs/ARCHITECTURE.md):

- ``omnimask.modalities.<name>``: per-modality ingest, decoding, tokenizers, maskers, targets;
- ``omnimask.models``: encoders, heads, the recipe model and the Lightning module;
- ``omnimask.pipelines``: preprocessing jobs, shard formats, manifests and loaders;
- ``omnimask.orchestration``: the CLI, training runs and Ray set-up.
"""

__version__ = "0.1.0"
