"""Moved to :mod:`omnimask.core.networks`; this import path stays for plugins written against it."""

from omnimask.core.networks import Encoder, Head, MaskIndex

__all__ = ["Encoder", "Head", "MaskIndex"]
