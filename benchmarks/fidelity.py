"""omnimask's model against the reference code's, on equal weights, inputs and masks.

    python -m benchmarks.fidelity [--recipes mae_image_tiny videomae ...] [--batch-size 2]

The reference side is a recipe's baseline (:func:`benchmarks.references.reference_for`), written from the
reference repository's code with its own parameter names; it gets omnimask's weights through the
recipe's :class:`omnimask.weights.base.ReferenceLayout` (``to_reference``), and its gradients come back
through ``from_reference``, so a wrong key or layout in either direction shows up as a difference here.
Every figure is a relative difference: ``max |ours - theirs| / max |theirs|`` per tensor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


NO_DROPOUT = {  # encoder name: the overrides that turn its recipe's dropout and stochastic depth off
    "vit": ("model.encoder.drop_path=0", "model.head.drop_path=0"),
    "pointmae": ("model.encoder.drop_path=0", "model.head.drop_path=0"),
    "gnn": ("model.encoder.in_drop=0", "model.encoder.attn_drop=0", "model.head.in_drop=0", "model.head.attn_drop=0"),
    "esm": (),
}
"""Train mode compares batch statistics and everything else deterministic; the two sides draw their
dropout masks from different random streams, so those are off."""


def no_dropout(name: str, overrides: Sequence[str] = ()) -> tuple[str, ...]:
    """``overrides`` plus those turning off the dropout of recipe ``name``'s model (:data:`NO_DROPOUT`)."""
    from omnimask.core.config import load_recipe

    return (*overrides, *NO_DROPOUT[load_recipe(name, list(overrides)).model.encoder.name])


def relative(ours: Any, theirs: Any) -> float:
    """``max |ours - theirs| / max |theirs|`` (0 when both are zero)."""
    dtype = torch.promote_types(ours.dtype, theirs.dtype)  # float32 stays float32: copying ViT-B's gradients
    ours, theirs = ours.detach().to(dtype), theirs.detach().to(dtype)  # to float64 took ~9 s a comparison
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: omnimask {list(ours.shape)}, reference {list(theirs.shape)}")
    scale = theirs.abs().max().item()
    diff = (ours - theirs).abs().max().item()
    return diff / scale if scale > 0 else diff


def built(name: str, overrides: Sequence[str] = (), batch_size: int = 2, seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """``(recipe, model, batch)``: recipe ``name`` with ``overrides``, its model and one batch of its own loader
    pipeline over generated inputs, after ``torch.manual_seed(seed)``."""
    from benchmarks.train_step import build, real_batch

    torch.manual_seed(seed)
    recipe = build(name, list(overrides))
    batch = real_batch(recipe, batch_size)
    return recipe, recipe.build_model(), batch


def check_default_loss(recipe: Any) -> None:
    """The references compute their method's loss, the head's default: a ValueError for a recipe whose
    ``model.loss`` is another (a name or parameters the default does not have)."""
    import dataclasses

    from omnimask.core import registry
    from omnimask.core.recipe import loss_spec

    cfg = recipe.config
    if cfg.model.loss is None:
        return
    default = loss_spec(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, loss=None)))
    if registry.check("loss", cfg.model.loss, "model.loss") != registry.check("loss", default, "model.loss"):
        raise ValueError(f"the reference computes the head's default loss {default}, not model.loss {cfg.model.loss}")


def compare(name: str, overrides: Sequence[str] = (), *, batch_size: int = 2, train: bool = False, seed: int = 0) -> dict[str, Any]:
    """Loss, predictions of the hidden tokens and every parameter's gradient of ``name`` (with ``overrides``)
    against its reference, one batch of the recipe's own loader pipeline, both sides in train mode
    (``train``: batch statistics, dropout and stochastic depth off: :func:`no_dropout`) or eval mode.

    Returns ``{"loss": (ours, theirs), "loss_rel", "pred_rel", "grad_rel": {omnimask name: rel},
    "grad_missing": [omnimask parameters the reference gave no gradient for]}``.
    """

    from benchmarks.references import reference_for
    from omnimask.core.networks import MaskIndex

    recipe, model, batch = built(name, no_dropout(name, overrides) if train else overrides, batch_size, seed)
    check_default_loss(recipe)
    model.train(train)
    reference = reference_for(recipe, model).train(train)
    layout = reference.layout

    index = MaskIndex.from_batch(batch)
    pred = model(batch["tokens"], index)
    target = model.target.finalize(model.compact_target(batch, index))
    loss = model.loss_fn(pred, target)
    loss.backward()
    ref_loss, ref_pred = reference.outputs(*reference.args(batch, same_mask=True))
    ref_loss.backward()

    ref_grads = {k: p.grad for k, p in reference.named_parameters() if p.grad is not None}
    grads_back = layout.from_reference(ref_grads, recipe)
    grad_rel, missing = {}, []
    for k, p in model.named_parameters():
        if p.grad is None:
            continue
        if k not in grads_back:
            missing.append(k)
            continue
        grad_rel[k] = relative(p.grad, grads_back[k])
    return {
        "loss": (loss.item(), ref_loss.item()),
        "loss_rel": relative(loss, ref_loss),
        "pred_rel": relative(pred.reshape(-1, pred.shape[-1]), ref_pred.reshape(-1, ref_pred.shape[-1])),
        "grad_rel": grad_rel,
        "grad_missing": missing,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--recipes",
        nargs="+",
        default=["mae_image_tiny", "videomae_tiny", "audiomae_tiny", "pointmae_tiny", "graphmae_tiny", "esm_mlm_tiny"],
    )
    p.add_argument("--batch-size", type=int, default=2)
    args = p.parse_args(argv)
    for name in args.recipes:
        for train in (False, True):
            r = compare(name, batch_size=args.batch_size, train=train)
            worst = max(r["grad_rel"].values(), default=0.0)
            print(
                json.dumps(
                    {
                        "recipe": name,
                        "mode": "train" if train else "eval",
                        "loss": r["loss"],
                        "loss_rel": r["loss_rel"],
                        "pred_rel": r["pred_rel"],
                        "grad_rel_max": worst,
                        "grad_missing": r["grad_missing"],
                    }
                )
            )


if __name__ == "__main__":
    main()
