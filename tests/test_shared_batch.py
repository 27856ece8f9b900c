"""Batches crossing from loader workers in shared memory: one segment a batch, segments reused only once freed."""

import time

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from omnimask.core.config import DataConfig, load_recipe
from omnimask.core.recipe import Recipe
from omnimask.data.loader import build_loader
from omnimask.data.shared_batch import ALIGN, TAG, BufferPool, Recycler, ReleaseBoard, in_one_buffer


def a_batch(seed: int, rows: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "tokens": torch.randn(rows, 5, 7, generator=g),
        "mask": torch.rand(rows, 5, generator=g) > 0.5,
        "edges": torch.randint(0, 9, (2, 11), generator=g),
        "pixels": torch.randint(0, 255, (rows, 4), dtype=torch.uint8),
        "count": torch.tensor(4),
        "strided": torch.arange(10.0)[::2],
        "keys": [str(i) for i in range(rows)],
        "num_hidden": 2,
    }


def assert_packed(out: dict, batch: dict) -> None:
    """``out`` holds ``batch``'s values, its contiguous tensors as aligned views of one shared segment."""
    assert out.keys() - {TAG} == batch.keys() and out["keys"] == batch["keys"] and out["num_hidden"] == 2
    assert out["strided"] is batch["strided"]  # not contiguous: left alone
    packed = [k for k in batch if torch.is_tensor(batch[k]) and k != "strided"]
    for k in packed:
        assert out[k] is not batch[k] and out[k].dtype == batch[k].dtype and torch.equal(out[k], batch[k])
    base = out["tokens"].untyped_storage()
    assert base.is_shared() and all(out[k].untyped_storage().data_ptr() == base.data_ptr() for k in packed)
    assert all(out[k].storage_offset() * out[k].element_size() % ALIGN == 0 for k in packed)


def test_in_one_buffer_keeps_every_tensor_and_shares_one_segment():
    batch = a_batch(0)
    assert_packed(in_one_buffer(batch), batch)
    single = {"tokens": batch["tokens"], "keys": ["a"]}
    assert in_one_buffer(single) is single  # one tensor crosses as one segment anyway


def received(out: dict, recycler: Recycler) -> dict:
    """``out`` as the main process gets it and passes it on: tensors in storage of its own (its own mapping of
    the segment; here copies, as this process also holds the pool), the tag a list (the DataLoader's
    default_convert makes one)."""
    crossed = {k: v.clone() if torch.is_tensor(v) else v for k, v in out.items()}
    return next(recycler.track(iter([{**crossed, TAG: list(out[TAG])}])))


def test_a_segment_is_reused_only_after_nothing_holds_its_batch():
    board = ReleaseBoard(workers=1, slots=2)
    pool, recycler = BufferPool(board, 0), Recycler(board)
    one = a_batch(1)
    first = pool.pack(one)
    assert_packed(first, one)
    serial = first[TAG][2]
    assert first[TAG][:2] == (0, 0) and board.cells[0, 0] == serial
    kept = received(first, recycler)["tokens"][1:]  # a view keeps the whole segment
    del first
    second = pool.pack(a_batch(2))
    assert second[TAG][1] == 1  # slot 0 is still held
    received(second, recycler)
    third = pool.pack(a_batch(3))
    assert TAG not in third and third["tokens"].untyped_storage().is_shared()  # every slot busy: a fresh segment
    recycler.release()
    assert board.cells[0].tolist() == [serial, 0]  # the dropped batch's slot is free, the held one's not
    fourth = pool.pack(a_batch(4))
    assert fourth[TAG][1] == 1
    del kept
    recycler.release()
    assert board.cells[0, 0] == 0


def test_a_slot_grows_for_a_bigger_batch_and_a_stale_release_frees_nothing():
    board = ReleaseBoard(workers=1, slots=1)
    pool, recycler = BufferPool(board, 0), Recycler(board)
    small = pool.pack(a_batch(1, rows=2))
    storage = small["tokens"].untyped_storage().data_ptr()
    board.cells[0, 0] = 0
    again = pool.pack(a_batch(2, rows=2))
    assert again["tokens"].untyped_storage().data_ptr() == storage  # the same segment, reused
    board.cells[0, 0] = 0
    three = a_batch(3, rows=40)
    big = pool.pack(three)
    assert_packed(big, three)
    assert big["tokens"].untyped_storage().data_ptr() != storage
    recycler.held[(0, 0, again[TAG][2])] = StorageWeakRef(torch.empty(1).untyped_storage())  # gone at once
    recycler.release()  # a late release of the earlier batch: the cell carries the big one now
    assert board.cells[0, 0] == big[TAG][2] and not recycler.held


def test_a_new_iteration_frees_the_slots_of_batches_never_passed_on():
    board = ReleaseBoard(workers=2, slots=3)
    pool0, pool1, recycler = BufferPool(board, 0), BufferPool(board, 1), Recycler(board)
    kept = received(pool0.pack(a_batch(1)), recycler)
    dropped = pool1.pack(a_batch(2))  # prefetched by worker 1, then discarded by the DataLoader's reset
    del dropped
    batches = recycler.iterate(lambda: iter([]))
    assert board.cells[1].tolist() == [0, 0, 0]  # reclaimed
    assert board.cells[0, 0] != 0  # still held by this process
    new = pool1.pack(a_batch(3))  # packed in the new iteration: not reclaimed by a later look
    recycler.reclaim()
    assert board.cells[1, new[TAG][1]] == new[TAG][2]
    assert list(batches) == [] and torch.equal(kept["tokens"], a_batch(1)["tokens"])


def test_loader_workers_reuse_segments_without_overwriting_held_batches(image_dataset):
    recipe = Recipe.from_config(load_recipe("mae_image_tiny", ["model.tokenizer.image_size=32"]))
    expected = build_loader(recipe, data=DataConfig(path=image_dataset["shards"], batch_size=4, num_workers=0), seed=0, epochs=4)
    loader = build_loader(
        recipe, data=DataConfig(path=image_dataset["shards"], batch_size=4, num_workers=2, prefetch_factor=2), seed=0, epochs=4
    )
    board, recycler = loader.dataset.board, loader.recycler
    slots_used, serials, held = set(), set(), None
    for i, (want, got) in enumerate(zip(expected, loader)):
        assert TAG not in got and got["keys"] == want["keys"]
        assert torch.equal(got["tokens"], want["tokens"]) and torch.equal(got["mask"], want["mask"])
        slots_used |= {(w, slot) for w, slot, _ in recycler.held}
        serials |= {(w, serial) for w, _, serial in recycler.held}
        if i == 3:
            held = (got, {k: v.clone() for k, v in want.items() if torch.is_tensor(v)})
    assert i + 1 >= 20 and len(serials) == i + 1  # every batch crossed in a slot's segment
    assert len(slots_used) <= board.cells.numel() < i + 1  # so segments were reused
    got, want = held
    assert all(torch.equal(got[k], v) for k, v in want.items())  # and the one held throughout was never overwritten

    # a new iteration frees the slots of the batches the workers had prefetched for the last one
    loader = build_loader(recipe, data=DataConfig(path=image_dataset["shards"], batch_size=4, num_workers=2, prefetch_factor=2), seed=0)
    board, recycler = loader.dataset.board, loader.recycler
    for _ in range(3):
        it = iter(loader)
        next(it), next(it)
        deadline = time.monotonic() + 60
        while (board.cells != 0).sum() <= len(recycler.held) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the workers have prefetched batches not passed on yet
        assert (board.cells != 0).sum() > len(recycler.held)
    it = iter(loader)
    generation = int(board.generation[0])
    cells = board.cells.clone()
    stale = (cells != 0) & (cells >> ReleaseBoard.SHIFT < generation)
    assert {tuple(cell) for cell in stale.nonzero().tolist()} <= {(w, slot) for w, slot, _ in recycler.held}
    assert next(it)["tokens"].shape == (4, 16, 192)
