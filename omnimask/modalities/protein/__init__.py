"""Protein modality (ESM-style masked LM): FASTA ingest (one sample per record, validated against the
ESM alphabet, duplicates reported), the loader's sequence decoding (random crop), the ESM tokenizer
(``tokenizer.py``, alphabet in ``alphabet.py``) and BERT's 80/10/10 masker (``maskers.py``). The
transformer and the masked-LM head are in :mod:`omnimask.modalities.protein.model`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from omnimask.core.interfaces import EncodedSample, Modality, QuarantineError, Tokenizer
from omnimask.core.registry import register
from omnimask.modalities.protein.decode import ProteinAugmentConfig, ProteinDecoder
from omnimask.modalities.protein.ingest import ProteinIngestConfig, encode_fasta
from omnimask.modalities.protein.tokenizer import ESMTokenizer


@register("modality", "protein")
class ProteinModality(Modality):
    """Protein sequences (FASTA, plain or gzip): ESM-style masked language modelling."""

    name = "protein"
    IngestConfig = ProteinIngestConfig
    AugmentConfig = ProteinAugmentConfig
    tokenizer_types = (ESMTokenizer,)

    def holds_many(self, path: Path) -> bool:
        return True  # every FASTA file may hold many records

    def encode_records(self, path: Path, options: ProteinIngestConfig) -> Iterator[tuple[str, EncodedSample | QuarantineError]]:
        return encode_fasta(path, options)

    def decoder(self, augment: ProteinAugmentConfig, tokenizer: Tokenizer) -> ProteinDecoder:
        return ProteinDecoder(augment)

    def example_inputs(self, out: Path, count: int, *, seed: int = 0) -> int:
        from omnimask.modalities.protein.examples import build_demo_proteins

        return build_demo_proteins(out, count, seed=seed)
