"""Moved to :mod:`omnimask.core.interfaces`; this import path stays for plugins written against it."""

from omnimask.core.interfaces import EncodedSample, Masker, Modality, QuarantineError, Target, Tokenizer, TokenLayout, Tokens

__all__ = ["EncodedSample", "Masker", "Modality", "QuarantineError", "Target", "TokenLayout", "Tokenizer", "Tokens"]
