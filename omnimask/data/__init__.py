"""Data jobs and loaders: the Ray Data preprocessing job (``preprocess``, ``units``, ``sources``), the
epoch order and its resume position (``order``), the torch and Ray Data loaders (``loader``, ``ray_ingest``,
``shared_batch``), dataset inspection and the local Ray session. Imports :mod:`omnimask.core` and
:mod:`omnimask.io`; modalities are reached through the registry by name, never imported."""
