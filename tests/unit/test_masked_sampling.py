"""Loss masks at batch time: a target whose mask is 0 becomes -1, in windows and in pairs rows alike."""

from __future__ import annotations

import numpy as np

from data_service.sampling import EpochOrder, get_batch, pair_batch

ARGS = {"block_size": 7, "batch_size": 6, "seed": 1, "split": "train", "step": 4}


def test_windows_mask_exactly_the_untrained_targets():
    tokens = np.arange(200, dtype=np.uint16)
    mask = (np.arange(200) % 3 != 0).astype(np.uint8)  # every third token takes no loss
    x, y = get_batch(tokens, mask=mask, **ARGS)
    plain_x, plain_y = get_batch(tokens, **ARGS)
    assert (x == plain_x).all()
    # Token values are their positions, so each target says whether its mask is 0.
    untrained = plain_y % 3 == 0
    assert (y[untrained] == -1).all()
    assert (y[~untrained] == plain_y[~untrained]).all()
    assert untrained.any() and (~untrained).any()


def test_an_all_ones_mask_changes_nothing():
    tokens = np.arange(100, dtype=np.uint16) % 17
    x, y = get_batch(tokens, mask=np.ones(100, dtype=np.uint8), **ARGS)
    plain_x, plain_y = get_batch(tokens, **ARGS)
    assert (x == plain_x).all() and (y == plain_y).all()


# Two conversations as pairs rows: user turn (untrained), reply 1 (trained), user turn, reply 2, end.
TOKENS = np.array([1, 2, 3, 50, 51, 4, 5, 52, 99, 1, 6, 53, 54, 99], dtype=np.uint16)
MASK = np.array([0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0], dtype=np.uint8)
ROWS = np.array([[0, 3, 9], [9, 2, 5]], dtype=np.int64)  # (start, tokens before the first reply, total)


def rows(mask: np.ndarray | None, block: int = 12) -> tuple[np.ndarray, np.ndarray]:
    order = EpochOrder(len(ROWS), 0, "train")
    return pair_batch(TOKENS, ROWS, order, block_size=block, batch_size=2, step=0, pad=99, mask=mask)


def test_pairs_rows_mask_the_turns_between_replies():
    order = EpochOrder(len(ROWS), 0, "train")
    x, y = rows(MASK)
    for i, example in enumerate(order.take(0, 2)):
        start, _, total = ROWS[example]
        seq = TOKENS[start : start + total].astype(np.int64)
        expected = np.where(MASK[start + 1 : start + total] == 1, seq[1:], -1)
        assert (y[i, : total - 1] == expected).all()
        assert (y[i, total - 1 :] == -1).all()  # padding
        assert (x[i, : total - 1] == seq[:-1]).all()
    # Only the replies' tokens remain as targets.
    assert sorted(y[y != -1].tolist()) == [50, 51, 52, 53, 54]


def test_pairs_rows_without_a_mask_are_as_before():
    x, y = rows(None)
    assert (y[y != -1] >= 4).all()  # everything after the prompt of 3 is a target, user turn included
    assert 4 in y and 5 in y


def test_a_cut_row_keeps_its_mask_aligned():
    x, y = rows(MASK, block=4)
    first = int(np.flatnonzero(EpochOrder(len(ROWS), 0, "train").take(0, 2) == 0)[0])
    assert y[first].tolist() == [-1, -1, 50, 51]
