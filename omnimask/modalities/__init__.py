"""One folder per modality: its ingest, decoding, tokenizer, maskers, model (where it has its own
encoder or head), example-input generator, recipes and a README. Nothing here is imported until a
recipe names it (see :data:`omnimask.core.registry.BUILTINS`): an image run never loads PyAV or torchaudio.

``base`` and ``targets`` are the old import paths of :mod:`omnimask.core.interfaces` and
:mod:`omnimask.components.targets`, kept for plugins."""
