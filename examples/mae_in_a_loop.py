"""MAE in a plain PyTorch loop: omnimask's pieces without Ray, Lightning or shard files.

    python examples/mae_in_a_loop.py [--steps 20]

files --Modality.encode_file--> (key, members), what a shard holds
      --SamplePipeline (decode -> tokenizer -> masker -> target)--> samples
      --recipe_collate--> batch {tokens [B, N, D] uint8, mask [B, N], ...}
      --model.loss (tokenizer.prepare -> encoder -> head -> loss_fn)--> scalar

`omnimask pretrain mae_image_tiny` runs these same pieces, fed by the streaming loader on Ray Train.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from omnimask.core import registry
from omnimask.core.collate import recipe_collate
from omnimask.core.config import load_recipe
from omnimask.core.interfaces import QuarantineError
from omnimask.core.recipe import Recipe
from omnimask.data.loader import SamplePipeline
from omnimask.data.sources import list_inputs


def shard_samples(folder: Path) -> list[tuple[str, dict[str, bytes]]]:
    """Write example images into ``folder`` and ingest them as `omnimask preprocess` does: ``(key, members)``."""
    image = registry.lookup("modality", "image")()
    image.example_inputs(folder, 32)  # crops of scikit-image's photographs, plus three broken files
    samples = []
    for item in list_inputs(folder):
        try:
            encoded = image.encode_file(Path(item.path), image.IngestConfig())
        except QuarantineError as e:  # preprocessing would write this to quarantine.jsonl
            print(f"quarantined {Path(item.path).name}: {e}")
            continue
        samples.append((f"{len(samples):09d}", {encoded.ext: encoded.payload, "json": json.dumps(encoded.meta).encode()}))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)  # the model's initial weights; data and masks have their own seeds

    recipe = Recipe.from_config(load_recipe("mae_image_tiny"))  # 64px images, 8x8 patches, 75% hidden
    with tempfile.TemporaryDirectory() as tmp:
        samples = shard_samples(Path(tmp))
    pipeline = SamplePipeline(recipe, seed=0)  # crops, flips and masks seeded by (seed, epoch, key)
    collate = recipe_collate(recipe)
    model = recipe.build_model()  # MaskedModel: ViT encoder + MAE decoder head
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

    for step in range(args.steps):
        # each step reads a batch of samples; the step number as the epoch gives fresh crops and masks
        picks = [samples[(step * args.batch_size + i) % len(samples)] for i in range(args.batch_size)]
        batch = collate([pipeline(key, members, epoch=step) for key, members in picks])
        loss = model.loss(batch)  # encoder on the visible tokens, head predicts the hidden ones, MSE on those
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step:3d}  tokens {tuple(batch['tokens'].shape)}  hidden {batch['num_hidden']}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
