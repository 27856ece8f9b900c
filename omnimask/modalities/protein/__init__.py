"""Protein modality (ESM-style masked LM): FASTA ingest (one sample per record, validated against the
ESM alphabet, duplicates reported) and the loader's sequence decoding. The ESM alphabet is in
``alphabet.py``. Tokenizer, BERT masker and encoder arrive with the variable-length batch contract."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from omnimask.modalities.base import EncodedSample, Modality, QuarantineError, Tokenizer
from omnimask.modalities.protein.decode import ProteinAugmentConfig, ProteinDecoder
from omnimask.modalities.protein.ingest import ProteinIngestConfig, encode_fasta
from omnimask.registry import register


@register("modality", "protein")
class ProteinModality(Modality):
    name = "protein"
    IngestConfig = ProteinIngestConfig
    AugmentConfig = ProteinAugmentConfig

    def holds_many(self, path: Path) -> bool:
        return True  # every FASTA file may hold many records

    def encode_records(self, path: Path, options: ProteinIngestConfig) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
        return encode_fasta(path, options)

    def decoder(self, augment: ProteinAugmentConfig, tokenizer: Tokenizer) -> ProteinDecoder:
        return ProteinDecoder(augment)
