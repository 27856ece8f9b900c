"""The loss slot (``model.loss``, registry kind ``loss``): a config change trains MAE with another loss, each
head's default is its previous loss bit for bit, and bad loss configs fail at check time with their key.

That the defaults leave every method's loss where it was is also what the fidelity tests' golden losses
show: test_fidelity_mae.py ``GOLDEN`` (mse: mae_image_tiny, audiomae_tiny), test_fidelity_videomae.py
``GOLDEN`` (mse), test_fidelity_pointmae.py ``test_golden_loss_of_a_fixed_tiny_batch`` (chamfer),
test_fidelity_graphmae.py ``GOLDEN_TINY_LOSS`` (sce with the head's gamma 2), test_fidelity_esm.py
``GOLDEN_TINY_LOSS`` (cross_entropy)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import overfit
from omnimask.cli.check_plugin import generated_samples
from omnimask.cli.plugins import components, config_sections, describe
from omnimask.core import registry
from omnimask.core.collate import recipe_collate
from omnimask.core.config import ComponentSpec, ConfigError, load_recipe
from omnimask.core.networks import Loss, MaskIndex
from omnimask.core.recipe import Recipe, loss_spec
from omnimask.data.loader import SamplePipeline
from omnimask.modalities.graph.model import scaled_cosine_error
from omnimask.modalities.pointcloud.geometry import chamfer_distance

SMALL = ["model.tokenizer.image_size=32", "model.encoder.depth=1", "model.head.depth=1"]


@pytest.fixture(scope="module")
def image_samples():
    with tempfile.TemporaryDirectory() as tmp:
        return generated_samples("image", 6, Path(tmp))


def real_batch(recipe: Recipe, samples) -> dict:
    pipeline = SamplePipeline(recipe, seed=0, strict=True)
    return recipe_collate(recipe)([pipeline(key, members, 0) for key, members in samples])


def test_mae_trains_with_an_l1_loss_named_in_the_config(image_samples):
    recipe = Recipe.check(load_recipe("mae_image_tiny", [*SMALL, "model.loss={name: l1}"]))
    torch.manual_seed(0)
    model = recipe.build_model()
    assert registry.lookup("loss", "l1") is type(model.loss_fn)
    batch = real_batch(recipe, image_samples)
    pred = model(batch["tokens"], MaskIndex.from_batch(batch))
    b, n_hidden = batch["tokens"].shape[0], batch["num_hidden"]
    # the hidden tokens, by hand: the pixels target is the prepared (normalised) tokens under the mask
    hidden = recipe.tokenizer.prepare(batch["tokens"])[batch["mask"]].view(b, n_hidden, -1)
    assert pred.shape == hidden.shape
    assert torch.allclose(model.loss(batch), (pred - hidden).abs().mean(), rtol=1e-6, atol=0)
    losses = overfit(model, batch, steps=15, lr=2e-3)
    assert losses[-1] < 0.8 * losses[0], losses


OLD_HEAD_LOSSES = {  # recipe: the head's loss method before the loss slot, written out
    "mae_image_tiny": lambda p, t, head: (p.float() - t.float()).pow(2).mean(dim=-1).mean(),
    "pointmae_tiny": lambda p, t, head: chamfer_distance(p.reshape(-1, p.shape[-1] // 3, 3), t.reshape(-1, t.shape[-1] // 3, 3)).mean(),
    "graphmae_tiny": lambda p, t, head: scaled_cosine_error(p, t, head.gamma),
    "graphmae": lambda p, t, head: scaled_cosine_error(p, t, head.gamma),
    "esm_mlm_tiny": lambda p, t, head: F.cross_entropy(p.float(), t),
}


@pytest.mark.parametrize("name", list(OLD_HEAD_LOSSES))
def test_each_heads_default_loss_is_its_previous_loss_bit_for_bit(name):
    cfg = load_recipe(name)
    assert cfg.model.loss is None  # no recipe names a loss: each gets its head's
    head = registry.check("head", cfg.model.head, "model.head")[1]
    loss = registry.build("loss", loss_spec(cfg), "model.loss")
    g = torch.Generator().manual_seed(1)
    if name.startswith("esm"):
        pred, target = torch.randn(7, 33, generator=g), torch.randint(0, 33, (7,), generator=g)
    else:
        shape = (3, 5, 48) if name.startswith("pointmae") else (3, 5, 12)
        pred, target = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        if name.startswith("graphmae"):  # padded batches: [M, F]
            pred, target = pred.flatten(0, 1), target.flatten(0, 1)
    assert torch.equal(loss(pred, target), OLD_HEAD_LOSSES[name](pred, target, head))


def test_graphmae_recipes_keep_their_sce_exponent_on_the_head():
    assert loss_spec(load_recipe("graphmae")) == ComponentSpec("sce", {"gamma": 1.0})
    assert loss_spec(load_recipe("graphmae_tiny")) == ComponentSpec("sce", {"gamma": 2.0})
    named = load_recipe("graphmae", ["model.loss={name: sce, gamma: 2.5}"])
    assert Recipe.check(named).build_model().loss_fn.gamma == 2.5  # model.loss wins over the head's gamma


def test_generic_losses_on_grid_and_padded_predictions():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    build = lambda name, **params: registry.build("loss", ComponentSpec(name, params))  # noqa: E731  (a one-line helper for the asserts below)
    for name in ("mse", "l1", "smooth_l1"):  # a padded batch's rows give the grid batch's loss
        assert torch.allclose(build(name)(pred, target), build(name)(pred.flatten(0, 1), target.flatten(0, 1)))
    diff = pred - target
    assert torch.allclose(build("l1")(pred, target), diff.abs().mean())
    huber = torch.where(diff.abs() < 0.5, 0.5 * diff**2 / 0.5, diff.abs() - 0.25)
    assert torch.allclose(build("smooth_l1", beta=0.5)(pred, target), huber.mean())
    assert torch.allclose(build("smooth_l1", beta=0.0)(pred, target), build("l1")(pred, target))
    logits, ids = torch.randn(2, 4, 9, generator=g), torch.randint(0, 9, (2, 4), generator=g)
    ce = build("cross_entropy")
    assert torch.allclose(ce(logits, ids), ce(logits.flatten(0, 1), ids.flatten()))  # not classes along dim 1
    ignored = ids.clone()
    ignored[0, :2] = 3
    assert torch.allclose(
        build("cross_entropy", ignore_index=3)(logits, ignored),
        F.cross_entropy(logits.flatten(0, 1)[ignored.flatten() != 3], ignored.flatten()[ignored.flatten() != 3]),
    )


def test_a_bad_loss_config_fails_at_check_with_its_key():
    with pytest.raises(ConfigError, match=r"model\.loss\.name: unknown loss 'l2'; available: .*'mse'"):
        Recipe.check(load_recipe("mae_image_tiny", ["model.loss=l2"]))
    with pytest.raises(ConfigError, match=r"model\.loss\.name: unknown loss 'msee' \(did you mean 'mse'\?\)"):
        Recipe.check(load_recipe("mae_image_tiny", ["model.loss.name=msee"]))
    with pytest.raises(ConfigError, match=r"model\.loss: beta must be >= 0"):
        Recipe.check(load_recipe("mae_image_tiny", ["model.loss={name: smooth_l1, beta: -1}"]))
    with pytest.raises(ConfigError, match=r"model\.loss\.gama: unknown key \(did you mean 'gamma'\?\)"):
        Recipe.check(load_recipe("graphmae_tiny", ["model.loss={name: sce, gama: 2}"]))
    with pytest.raises(ConfigError, match=r"model\.loss: loss 'chamfer' takes no parameters"):
        Recipe.check(load_recipe("pointmae_tiny", ["model.loss={name: chamfer, p: 1}"]))


def test_batch_parts_refuse_a_loss_that_is_not_a_sample_mean_and_name_it():
    assert load_recipe("mae_image_tiny").trainer.cpu_batch_parts == 2
    with pytest.raises(
        ConfigError,
        match=r"trainer\.cpu_batch_parts: loss 'cross_entropy' \(model\.loss\) does not "
        r"declare itself a mean of per-sample terms",
    ):
        Recipe.check(load_recipe("mae_image_tiny", ["model.loss=cross_entropy"]))
    for name in ("mse", "l1", "smooth_l1"):
        Recipe.check(load_recipe("mae_image_tiny", [f"model.loss={name}"]))


class HalfSquaredError(Loss):
    """A loss from outside omnimask, named by dotted path."""

    is_sample_mean = True

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (pred - target).pow(2).mean()


def test_a_loss_class_named_by_dotted_path_trains_and_adds_no_weights(image_samples):
    torch.manual_seed(0)
    plain = Recipe.check(load_recipe("mae_image_tiny", SMALL))
    model = plain.build_model()
    torch.manual_seed(0)
    custom = Recipe.check(load_recipe("mae_image_tiny", [*SMALL, "model.loss={name: 'test_losses:HalfSquaredError'}"]))
    other = custom.build_model()
    assert isinstance(other.loss_fn, HalfSquaredError)
    assert model.state_dict().keys() == other.state_dict().keys()  # checkpoints do not depend on the loss
    assert not any(k.startswith("loss_fn") for k in model.state_dict())
    batch = real_batch(plain, image_samples)
    assert torch.allclose(other.loss(batch), 0.5 * model.loss(batch))


def test_plugins_and_options_list_the_losses():
    listed = {c.name: c for c in components("loss")}
    assert set(registry.BUILTINS["loss"]) <= set(listed)
    assert {f.name: f.default for f in listed["smooth_l1"].fields} == {"beta": "1.0"}
    assert {f.name: f.default for f in listed["sce"].fields} == {"gamma": "3.0"}
    text = describe(list(listed.values()))
    assert text.startswith("losses:\n") and "  mse                  omnimask.components.losses:MSELoss  [omnimask]" in text
    assert "model.loss: Optional[ComponentSpec] = None  -- The loss of the head's predictions" in config_sections("model")
