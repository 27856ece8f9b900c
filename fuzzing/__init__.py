"""Mutation fuzzing of the preprocessing job (``python -m fuzzing.run``; ``tests/test_fuzz.py`` runs it short)."""
