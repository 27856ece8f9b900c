"""Old import paths kept for plugins: ``omnimask.models.base`` (now :mod:`omnimask.core.networks`).

Encoders and heads live in :mod:`omnimask.components` (shared) and ``omnimask.modalities.<name>.model``."""
