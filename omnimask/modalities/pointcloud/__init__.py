"""Point-cloud modality (Point-MAE). So far its building blocks: file readers (``readers.py``) and
batched plain-torch geometry (``geometry.py``: FPS, kNN grouping, Chamfer distance)."""
