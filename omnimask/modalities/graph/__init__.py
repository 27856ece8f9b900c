"""Graph modality (GraphMAE). So far its building blocks: readers for per-graph files and TU-format
dataset folders, with validation (``readers.py``)."""
