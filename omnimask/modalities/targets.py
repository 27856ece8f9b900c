"""Moved to :mod:`omnimask.components.targets`; this import path stays for plugins written against it."""

from omnimask.components.targets import hidden_tokens

__all__ = ["hidden_tokens"]
