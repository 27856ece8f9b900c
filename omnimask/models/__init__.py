"""Encoders, heads, the recipe model and its Lightning module. Importing registers the built-ins."""

from omnimask.models import encoders, heads  # noqa: F401
