"""Bytes on disk: shard formats (WebDataset tar, Parquet), the tar index, the manifest and quarantine
files, and the safe ``.npy``/``.npz`` reader. Imports only :mod:`omnimask.core`."""
