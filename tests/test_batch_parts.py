"""trainer.cpu_batch_parts: a CPU batch's loss computed as parts at once gives the whole batch's loss and
gradients, deterministically, through the module's training step."""

import pytest
import torch
from test_model import fake_batch, tiny_recipe

from omnimask.components.losses import MSELoss
from omnimask.core.collate import model_inputs, split_grid_batch
from omnimask.core.config import ConfigError, load_recipe
from omnimask.core.recipe import Recipe
from omnimask.train.batch_parts import BatchParts, PartThreads
from omnimask.train.module import MaskedModelingModule


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def loss_and_grads(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_split_grid_batch_slices_every_sample_field_and_keeps_the_counts():
    batch = fake_batch(tiny_recipe(), n=5)
    parts = split_grid_batch(batch, 2)
    assert [p["tokens"].shape[0] for p in parts] == [3, 2]
    for name in ("tokens", "mask", "target"):
        assert torch.equal(torch.cat([p[name] for p in parts]), batch[name])
    assert parts[0]["keys"] + parts[1]["keys"] == batch["keys"]
    assert all(p["num_hidden"] == batch["num_hidden"] for p in parts)
    assert parts[1]["tokens"].data_ptr() != batch["tokens"].data_ptr()  # a view at an offset, not a copy
    with pytest.raises(ValueError, match="cannot split a batch of 5 samples into 6"):
        split_grid_batch(batch, 6)
    with pytest.raises(ValueError, match="padded batch"):
        split_grid_batch({**batch, "valid": batch["mask"]}, 2)


def test_parts_give_the_whole_batch_loss_and_gradients_and_the_same_bits_every_run(two_threads):
    torch.manual_seed(0)
    model = tiny_recipe().build_model()
    batch = model_inputs(fake_batch(tiny_recipe(), n=7))  # 7 samples: parts of 4 and 3, weighted by size
    params = list(model.parameters())
    whole, whole_grads = loss_and_grads(model, lambda: model.loss(batch))
    parts = BatchParts(2)
    assert parts.parts_for(batch, params) == 2
    split, split_grads = loss_and_grads(model, lambda: parts(model.loss, batch, params))
    again, again_grads = loss_and_grads(model, lambda: parts(model.loss, batch, params))
    assert torch.allclose(split, whole, rtol=1e-5, atol=1e-7)
    for a, b in zip(split_grads, whole_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert torch.equal(split, again)
    _, halved = loss_and_grads(model, lambda: parts(model.loss, batch, params) * 0.5)  # a loss scaled after the parts
    assert all(a is None or torch.allclose(h, a * 0.5) for a, h in zip(split_grads, halved))
    parts.close()
    assert all(a is None and b is None or torch.equal(a, b) for a, b in zip(split_grads, again_grads))


def test_parts_run_on_threads_with_their_share_of_the_intra_op_threads(two_threads):
    threads = PartThreads(2, 1)
    try:
        seen = threads.map(lambda _: torch.get_num_threads(), [None, None])
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2  # the caller keeps its own
        with pytest.raises(ZeroDivisionError):
            threads.map(lambda x: 1 / x, [1, 0])
        assert threads.map(lambda x: x * 2, [3, 4]) == [6, 8]  # still serving after an error
    finally:
        threads.close()


def test_parts_follow_the_callers_autocast(two_threads):
    """Autocast is per thread: the parts must compute in the caller's precision."""
    torch.manual_seed(0)
    model = tiny_recipe().build_model()
    batch = model_inputs(fake_batch(tiny_recipe(), n=4))
    parts = BatchParts(2)
    dtypes = []
    handle = model.head.pred.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts(model.loss, batch, list(model.parameters()))
    handle.remove()
    parts.close()
    assert dtypes == [torch.bfloat16, torch.bfloat16]


def test_no_more_parts_than_threads_or_samples_and_one_where_the_split_does_not_apply(two_threads):
    model = tiny_recipe().build_model()
    batch = model_inputs(fake_batch(tiny_recipe(), n=4))
    params = list(model.parameters())
    assert BatchParts(8).parts_for(batch, params) == 2  # two intra-op threads
    assert BatchParts(8).parts_for(model_inputs(fake_batch(tiny_recipe(), n=1)), params) == 1  # one sample
    assert BatchParts(2).parts_for({**batch, "valid": batch["mask"]}, params) == 1  # padded
    torch.set_num_threads(1)
    assert BatchParts(2).parts_for(batch, params) == 1  # one intra-op thread: nothing to share


def test_the_module_trains_with_parts_and_the_config_refuses_heads_that_cannot(two_threads, monkeypatch):
    torch.manual_seed(0)
    module = MaskedModelingModule(tiny_recipe("trainer.cpu_batch_parts=2"), global_batch_size=6)
    batch = fake_batch(module.recipe, n=6)
    module.log = lambda *a, **k: None  # no Trainer attached: logging is Lightning's, not under test here
    module.optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)
    sizes = []
    module.compute_loss = lambda b: sizes.append(b["tokens"].shape[0]) or module.model.loss(b)
    split, split_grads = loss_and_grads(module.model, lambda: module.training_step(batch, 0))
    whole, whole_grads = loss_and_grads(module.model, lambda: module.model.loss(batch))
    module.teardown("fit")
    assert module.batch_parts._threads is None
    assert sorted(sizes) == [3, 3]
    assert torch.allclose(split, whole, rtol=1e-5, atol=1e-7)
    assert all(a is None or torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(split_grads, whole_grads))
    monkeypatch.setattr(MSELoss, "is_sample_mean", False)  # as a plugin loss that does not say
    with pytest.raises(ConfigError, match="trainer.cpu_batch_parts.*loss 'mse' .*mae_decoder.*does not declare"):
        MaskedModelingModule(tiny_recipe("trainer.cpu_batch_parts=2"), global_batch_size=6)
    with pytest.raises(ConfigError, match="trainer.cpu_batch_parts.*padded batches"):
        Recipe.check(load_recipe("esm_mlm_tiny", ["trainer.cpu_batch_parts=2"]))
    with pytest.raises(ConfigError, match="trainer.cpu_batch_parts: must be > 0"):
        load_recipe("mae_image_tiny", ["trainer.cpu_batch_parts=0"])
