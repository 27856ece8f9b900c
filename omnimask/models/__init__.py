"""Encoders, heads, the recipe model and its Lightning module. Importing registers the built-ins."""

from omnimask.models import encoders, esm, graphmae, heads, point_mae  # noqa: F401
