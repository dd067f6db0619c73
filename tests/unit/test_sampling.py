"""Batches are a pure function of (seed, split, step, rank)."""

import numpy as np
import pytest

from data_service.sampling import get_batch

TOKENS = np.random.default_rng(123).integers(0, 50, size=5000).astype(np.uint16)


def batches(start: int, steps: int, **kw) -> list[tuple[np.ndarray, np.ndarray]]:
    args = {"block_size": 16, "batch_size": 4, "seed": 7, "split": "train"} | kw
    return [get_batch(TOKENS, step=s, **args) for s in range(start, start + steps)]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_shape_dtype_and_targets_are_inputs_shifted_by_one():
    for x, y in batches(0, 3):
        assert x.shape == y.shape == (4, 16)
        assert x.dtype == y.dtype == np.int64
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        # Each row really is a window of the token stream.
        windows = np.lib.stride_tricks.sliding_window_view(TOKENS, 17)
        for row_x, row_y in zip(x, y, strict=True):
            assert (windows == np.append(row_x, row_y[-1])).all(axis=1).any()


def test_same_request_same_batches():
    assert_same(batches(0, 5), batches(0, 5))


def test_seed_split_and_step_change_the_batch():
    (x0, _), (x1, _) = batches(0, 2)
    assert not np.array_equal(x0, x1)
    assert not np.array_equal(batches(0, 1)[0][0], batches(0, 1, seed=8)[0][0])
    assert not np.array_equal(batches(0, 1)[0][0], batches(0, 1, split="val")[0][0])


def test_resume_from_step_k_equals_the_tail_of_a_run_from_zero():
    assert_same(batches(5, 5), batches(0, 10)[5:])


def test_ranks_are_disjoint_slices_of_the_single_rank_batch():
    world = 3
    whole = batches(0, 4, batch_size=4 * world)
    shards = [batches(0, 4, rank=r, world_size=world) for r in range(world)]
    for step in range(4):
        x = np.concatenate([shards[r][step][0] for r in range(world)])
        y = np.concatenate([shards[r][step][1] for r in range(world)])
        np.testing.assert_array_equal(x, whole[step][0])
        np.testing.assert_array_equal(y, whole[step][1])
    assert not np.array_equal(shards[0][0][0], shards[1][0][0])


def test_negative_seed_works_and_windows_reach_the_last_token():
    tokens = np.arange(10)
    x, y = get_batch(tokens, block_size=9, batch_size=3, seed=-5, split="train", step=0)
    np.testing.assert_array_equal(x, np.tile(np.arange(9), (3, 1)))
    np.testing.assert_array_equal(y, np.tile(np.arange(1, 10), (3, 1)))


def test_too_short_split_is_an_error():
    with pytest.raises(ValueError):
        get_batch(np.arange(10), block_size=10, batch_size=1, seed=0, split="train", step=0)
