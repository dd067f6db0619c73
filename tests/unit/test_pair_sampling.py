"""Pairs packing at batch time: one example per row, loss only on completions, epochs without repeats."""

from __future__ import annotations

import numpy as np

from data_service.sampling import EpochOrder, pair_batch

END = 99


def dataset(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n examples: prompt of 2-4 tokens (value 10 + example % 50), completion 1-3 tokens (60 + ...), END."""
    tokens, rows = [], []
    at = 0
    for i in range(n):
        p, c = int(rng.integers(2, 5)), int(rng.integers(1, 4))
        seq = [10 + i % 50] * p + [60 + i % 30] * c + [END]
        rows.append((at, p, len(seq)))
        tokens += seq
        at += len(seq)
    return np.array(tokens, dtype=np.uint16), np.array(rows, dtype=np.int64)


TOKENS, ROWS = dataset(37, np.random.default_rng(0))


def batch(step: int, block: int = 8, size: int = 5, rank: int = 0, world: int = 1, seed: int = 3):
    order = EpochOrder(len(ROWS), seed, "train")
    return pair_batch(
        TOKENS,
        ROWS,
        order,
        block_size=block,
        batch_size=size,
        step=step,
        pad=END,
        rank=rank,
        world_size=world,
    )


def examples_of(x: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(row) for row in x]


def test_rows_are_prompt_then_completion_with_targets_only_on_the_completion():
    order = EpochOrder(len(ROWS), 3, "train")
    x, y = batch(0)
    for i, example in enumerate(order.take(0, 5)):
        start, p, total = ROWS[example]
        seq = TOKENS[start : start + total].astype(np.int64)
        np.testing.assert_array_equal(x[i, : total - 1], seq[:-1])
        assert (x[i, total - 1 :] == END).all()
        assert (y[i, : p - 1] == -1).all()
        np.testing.assert_array_equal(y[i, p - 1 : total - 1], seq[p:])
        assert y[i, total - 2] == END and (y[i, total - 1 :] == -1).all()


def test_long_examples_are_cut_to_the_block():
    x, y = batch(0, block=3)
    assert x.shape == y.shape == (5, 3)
    assert not (x == END).all()


def test_no_example_repeats_within_an_epoch_and_every_one_comes():
    n = len(ROWS)
    order = EpochOrder(n, 3, "train")
    first_epoch = order.take(0, n)
    assert sorted(first_epoch) == list(range(n))
    second = order.take(n, n)
    assert sorted(second) == list(range(n)) and not np.array_equal(first_epoch, second)
    # Taking across the boundary in one call gives the same as taking piecewise.
    np.testing.assert_array_equal(order.take(n - 3, 6), np.concatenate([first_epoch[-3:], second[:3]]))


def test_ranks_are_disjoint_and_resume_is_exact():
    whole = [batch(s, size=4, world=1) for s in range(3)]
    again = [batch(s, size=4, world=1) for s in (1, 2)]
    for (xa, ya), (xb, yb) in zip(whole[1:], again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    ranks = [batch(0, size=2, rank=r, world=2)[0] for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(ranks), whole[0][0])
    order = EpochOrder(len(ROWS), 3, "train")
    assert set(order.take(0, 2)).isdisjoint(order.take(2, 2))
