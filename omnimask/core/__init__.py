"""The neutral core: what every other layer builds on, and nothing else.

The interfaces of the four modules and the tokenizer (``interfaces``: Tokenizer, Masker, Target,
Modality; ``networks``: Encoder, Head, MaskIndex), the :class:`~omnimask.core.recipe.Recipe` that composes
them from a config (``config``), the registry that names them, the contracts that check them, the batch
helpers (``collate``), seeding, limits and logging. Imports nothing from the rest of omnimask.
"""
