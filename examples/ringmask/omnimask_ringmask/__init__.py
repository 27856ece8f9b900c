"""An example omnimask plugin package: ``ring`` (a masker) and ``sobel`` (a target), declared as entry
points in ``pyproject.toml``; ``ring_sobel_tiny.yaml`` is a recipe that uses both."""
