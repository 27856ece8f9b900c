"""What several modalities share: transformer layers, the ViT encoder, the MAE decoder and other heads,
the generic maskers (random) and targets (pixels, normalised pixels), pixel helpers and sample photos.
Imports only :mod:`omnimask.core`. Each module registers its components when it is imported; the registry
imports a module the first time one of its names is looked up."""
