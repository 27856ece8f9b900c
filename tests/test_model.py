import dataclasses

import numpy as np
import torch

from conftest import overfit, photo_like
from omnimask.components.layers import sincos_pos_embed
from omnimask.core.collate import collate
from omnimask.core.config import load_recipe
from omnimask.core.indexing import split_ids
from omnimask.core.networks import MaskIndex
from omnimask.core.recipe import Recipe

TINY = ["model.tokenizer.image_size=32", "model.encoder.depth=2", "model.head.depth=1"]


def tiny_recipe(*overrides: str) -> Recipe:
    return Recipe.from_config(load_recipe("mae_image_tiny", [*TINY, *overrides]))


def fake_batch(recipe: Recipe, n: int = 4, seed: int = 0) -> dict:
    g = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        tokens = recipe.tokenizer(photo_like(g, 32, 32))
        mask = torch.as_tensor(recipe.masker(recipe.tokenizer.layout, seed * 100 + i))
        samples.append({"key": str(i), "tokens": tokens, "mask": mask, "target": recipe.target(tokens, mask)})
    return collate(samples)


def test_split_ids_visible_hidden_restore():
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    keep, hidden, restore = split_ids(mask, 2)
    assert keep.tolist() == [[1, 3], [0, 1]]
    assert hidden.tolist() == [[0, 2], [2, 3]]
    shuffled = torch.cat([keep, hidden], 1)
    assert torch.equal(torch.gather(shuffled, 1, restore), torch.arange(4).expand(2, 4))


def test_sincos_pos_embed_shape_and_cls():
    pe = sincos_pos_embed((14, 14), 768, cls_token=True)
    assert pe.shape == (197, 768)
    assert torch.equal(pe[0], torch.zeros(768))
    assert len({tuple(r) for r in pe[1:].round(decimals=5).tolist()}) == 196  # every position distinct


def test_encoder_never_sees_hidden_tokens_and_loss_covers_hidden_only():
    recipe = tiny_recipe()
    model = recipe.build_model()
    batch = fake_batch(recipe)
    prepared = recipe.tokenizer.prepare(batch["tokens"]).requires_grad_(True)
    index = MaskIndex.from_mask(batch["mask"], batch["num_hidden"])
    pred = model.head(model.encoder(prepared, index), index)
    assert pred.shape == batch["target"].shape == (4, 12, 192)
    target = recipe.target.finalize(batch["target"])
    loss = model.loss_fn(pred, target)
    assert torch.allclose(loss, model.loss(batch))
    loss.backward()
    grad_per_token = prepared.grad.abs().sum(-1)
    assert (grad_per_token[batch["mask"]] == 0).all(), "hidden tokens reached the encoder"
    assert (grad_per_token[~batch["mask"]] > 0).all()
    # the loss is the mean squared error over hidden tokens only
    manual = ((pred - target) ** 2).mean()
    assert torch.allclose(loss, manual)


def test_model_forward_from_compact_tokens_matches_parts():
    recipe = tiny_recipe()
    model = recipe.build_model().eval()
    batch = fake_batch(recipe)
    with torch.no_grad():
        pred = model(batch["tokens"], MaskIndex.from_batch(batch))
        index = MaskIndex.from_mask(batch["mask"], batch["num_hidden"])
        again = model.head(model.encoder(recipe.tokenizer.prepare(batch["tokens"]), index), index)
    assert torch.allclose(pred, again)


def test_tiny_model_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    recipe = tiny_recipe("model.target.name=norm_pixels")
    model = recipe.build_model()
    batch = fake_batch(recipe, n=8, seed=1)
    losses = overfit(model, batch, steps=60, lr=1e-3)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_block_masker_is_a_config_change():
    recipe = tiny_recipe("model.masker={name: block, ratio: 0.4, min_patches: 4}")
    batch = fake_batch(recipe)
    assert batch["num_hidden"] == round(16 * 0.4)
    pred = recipe.build_model()(batch["tokens"], MaskIndex.from_batch(batch))
    assert pred.shape == batch["target"].shape


def mae_2d_sincos(embed_dim: int, grid_size: int) -> np.ndarray:
    """MAE's get_2d_sincos_pos_embed (no cls), written out from its definition."""

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32))
    grid = np.stack(grid, axis=0).reshape(2, 1, grid_size, grid_size)
    return np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)


def test_sincos_matches_mae_channel_for_channel():
    ours = sincos_pos_embed((14, 14), 768).numpy()
    assert np.allclose(ours, mae_2d_sincos(768, 14), atol=1e-6)


def test_weight_decay_groups_follow_mae():
    from omnimask.train.schedule import param_groups

    model = tiny_recipe().build_model()
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "encoder.cls_token" in decayed and "head.mask_token" in decayed  # 3-D: decayed, as in MAE
    assert all(names[id(p)].endswith((".bias", ".weight")) for p in no_decay["params"])
    assert not any(n.endswith(".bias") for n in decayed)


def test_a_block_computing_the_last_rows_only_equals_the_full_block():
    from omnimask.components.layers import Block, rotary_tables

    torch.manual_seed(0)
    block = Block(32, 4)
    x = torch.randn(3, 10, 32)
    valid = torch.ones(3, 1, 1, 10, dtype=torch.bool)
    valid[1, ..., 7:] = False
    rotary = rotary_tables(10, 8)
    full = block(x, valid, rotary)
    part = block(x, valid, rotary, last=4)
    assert part.shape == (3, 4, 32)
    assert torch.allclose(part, full[:, -4:], atol=1e-6)
    assert not torch.allclose(part, full[:, :4], atol=1e-3)


def test_decoding_table_queries_equals_decoding_their_rows_and_shares_the_gradients():
    """MAE's first decoder block projects each query position once: outputs and gradients (of the
    context, the table and every weight) equal decoding the gathered rows, each projected per sample."""
    from omnimask.components.layers import Block, decode_queries, decode_table_queries

    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(Block(32, 4) for _ in range(2)).double()
    context = torch.randn(3, 5, 32, dtype=torch.double, requires_grad=True)
    table = torch.randn(10, 32, dtype=torch.double, requires_grad=True)
    ids = torch.stack([torch.randperm(10)[:6].sort().values for _ in range(3)])  # positions differ per sample
    inputs = [context, table, *blocks.parameters()]
    shared = decode_table_queries(blocks, context, table, ids)
    rows = decode_queries(blocks, torch.cat([context, table[ids]], dim=1), 6)
    assert shared.shape == (3, 6, 32) and torch.allclose(shared, rows, atol=1e-12)
    weights = torch.randn_like(rows)
    for a, b in zip(torch.autograd.grad((shared * weights).sum(), inputs), torch.autograd.grad((rows * weights).sum(), inputs)):
        assert torch.allclose(a, b, atol=1e-12)
    assert not torch.allclose(decode_table_queries(blocks, context, table, ids.flip(0)), shared)


def test_table_queries_in_bf16_keep_the_precision_of_per_sample_rows():
    """Under CPU bf16 autocast the shared projections' gradients (summed over every query of a batch of
    256) are as close to float64 as those of per-sample rows: the lookup sums them in float32, not bf16."""
    import copy

    from omnimask.components.layers import Block, decode_queries, decode_table_queries

    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(Block(64, 4) for _ in range(2))
    context, table = torch.randn(256, 17, 64), torch.randn(64, 64)
    ids = torch.stack([torch.randperm(64)[:48].sort().values for _ in range(256)])

    def gradients(shared: bool, dtype: torch.dtype) -> list[torch.Tensor]:
        model = copy.deepcopy(blocks).to(dtype)
        c, t = context.to(dtype), table.to(dtype)
        with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.float32):
            out = decode_table_queries(model, c, t, ids) if shared else decode_queries(model, torch.cat([c, t[ids]], 1), 48)
        out.float().square().mean().backward()
        return [p.grad.double() for p in model[0].parameters()]

    exact = gradients(False, torch.float64)

    def error(grads: list[torch.Tensor]) -> float:
        return max(float((g - e).abs().max() / e.abs().max()) for g, e in zip(grads, exact))

    rows, shared = error(gradients(False, torch.float32)), error(gradients(True, torch.float32))
    assert 0 < shared <= 1.25 * rows, (shared, rows)


def test_explicit_cpu_attention_in_bf16_matches_the_fused_kernel():
    import torch.nn.functional as F

    from omnimask.components.layers import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 16) for _ in range(3))
    keys = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    keys[0, ..., 5:] = False
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
    assert torch.allclose(attention(q, k, v, keys), reference, atol=1e-6)  # fp32: the fused kernel itself
    low = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), keys)  # bf16 on the CPU: the explicit product
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), reference, atol=0.05)
    assert (low.float() - reference).abs().max() > 0  # really computed in bf16


def test_the_model_reads_no_bookkeeping_entry_of_a_batch():
    """The training step hands the (possibly compiled) loss the batch without its keys and counts, so that
    torch.compile does not guard on them and recompile for every batch: the loss must not need them."""
    from benchmarks.train_step import real_batch
    from omnimask.core.collate import BOOKKEEPING, model_inputs

    for name in ("mae_image_tiny", "esm_mlm_tiny"):
        recipe = Recipe.from_config(load_recipe(name))
        batch = real_batch(recipe, 3)
        assert {"keys", "replaced"} <= set(batch)
        inputs = model_inputs(batch)
        assert not set(BOOKKEEPING) & set(inputs) and set(batch) - set(inputs) <= set(BOOKKEEPING)
        torch.manual_seed(0)
        model = recipe.build_model()
        full = model.loss(batch)
        stripped = model.loss(inputs)
        assert torch.equal(full, stripped)


def test_trainer_compile_compiles_the_loss_once_and_matches_eager(tmp_path, monkeypatch):
    """``trainer.compile``: the module's compiled loss equals the eager one, forward and backward, on batches
    with different masks, from one graph (the tokenizer's normalisation tables once recompiled it on the
    second step: a dict they were cached in changed under the first step's guards)."""
    import torch._dynamo

    from omnimask.core.collate import model_inputs
    from omnimask.train.module import MaskedModelingModule

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # compile for real, not from an earlier run's cache
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() leaves the counters of earlier compilations in this process
    torch.manual_seed(0)
    module = MaskedModelingModule(tiny_recipe("trainer.compile=true"), global_batch_size=4)
    assert module.compute_loss is not module.model.loss
    for seed in range(3):
        batch = fake_batch(module.recipe, seed=seed)
        compiled = module.compute_loss(model_inputs(batch))
        compiled.backward()
        grads = [p.grad.clone() for p in module.model.parameters()]
        module.model.zero_grad(set_to_none=True)
        eager = module.model.loss(batch)
        eager.backward()
        assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)
        assert all(torch.allclose(a, p.grad, rtol=1e-4, atol=1e-6) for a, p in zip(grads, module.model.parameters()))
        module.model.zero_grad(set_to_none=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_select_rows_with_a_count_equals_boolean_indexing():
    from omnimask.core.indexing import select_rows

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=g)
    mask = torch.rand(3, 7, generator=g) > 0.5
    assert torch.equal(select_rows(x, mask, int(mask.sum())), x[mask])
    assert torch.equal(select_rows(mask, mask, int(mask.sum())), mask[mask])  # [B, N] -> [count]
    assert torch.equal(select_rows(x, mask), x[mask])


def test_gather_tokens_picks_each_samples_rows_and_adds_their_gradients_back():
    from omnimask.core.indexing import gather_tokens

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=g, requires_grad=True)
    ids = torch.stack([torch.randperm(7, generator=g)[:4] for _ in range(3)])
    ids[0, 1] = ids[0, 0]  # a row picked twice gets both gradients
    out = gather_tokens(x, ids)
    assert torch.equal(out, torch.stack([x[b, ids[b]] for b in range(3)]))
    grad = torch.randn(out.shape, generator=g)
    out.backward(grad)
    expected = torch.zeros(3, 7, 5).index_put_((torch.arange(3)[:, None].expand_as(ids), ids), grad, accumulate=True)
    assert torch.allclose(x.grad, expected)
    table = torch.randn(1, 7, 5, generator=g)  # one row per position, shared by the batch (broadcast)
    for shared in (table, table.expand(3, -1, -1)):
        assert torch.equal(gather_tokens(shared, ids), table[0][ids])
    assert torch.equal(gather_tokens(x.detach()[:, :, :2], ids), x.detach()[:, :, :2][torch.arange(3)[:, None], ids])  # strided x


def test_padded_recipes_trace_into_one_graph_without_a_device_read_back():
    """Protein and graph batches (GIN, and GAT with an edge masker) select hidden and real rows with counts,
    and graphs' edges, made by the collate: no graph break under torch.compile (a boolean index breaks it)
    and no device sync in the eager GPU step."""
    import torch._dynamo

    from benchmarks.train_step import real_batch
    from omnimask.core.collate import model_inputs

    gat = ["model.encoder.kind=gat", "model.head.kind=gat", "model.edge_masker={name: edge_random}"]
    for name, overrides in (("esm_mlm_tiny", []), ("graphmae_tiny", []), ("graphmae_tiny", gat)):
        recipe = Recipe.from_config(load_recipe(name, overrides))
        batch = real_batch(recipe, 4)
        assert batch["num_valid"] == int(batch["valid"].sum())
        torch.manual_seed(0)
        model = recipe.build_model()
        inputs = model_inputs(batch)
        explained = torch._dynamo.explain(model.loss)(inputs)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
        index = MaskIndex.from_batch(inputs)
        assert index.num_masked == int(batch["mask"].sum()) == batch["target"].shape[0]
        preds = []
        for counted in (index, dataclasses.replace(index, num_valid=None, num_masked=None)):  # the second: x[mask]
            torch.manual_seed(1)  # the same dropout draws
            preds.append(model(inputs["tokens"], counted))
        assert torch.equal(*preds)
    torch._dynamo.reset()
