"""Training: the Lightning module, the Ray Train driver (``pretrain``) and worker loop (``worker``), its
callbacks, the learning-rate schedule, batch splitting (``batch_parts``) and the allocator settings."""
