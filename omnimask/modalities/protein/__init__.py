"""Protein modality (ESM-style masked LM). So far its building blocks: the ESM alphabet
(``alphabet.py``) and FASTA reading and validation (``fasta.py``)."""
