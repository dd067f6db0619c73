"""Per-batch checks and the split-overlap measure, on batches made by hand the way packings make them."""

from __future__ import annotations

import math

import pytest
import torch

from trainer_service.report.batch_checks import BatchChecks, UnfitBatch
from trainer_service.report.overlap import Overlap

V = 20


def stream_batch(seed: int = 0, rows: int = 4, block: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Stream packing: windows of block + 1 tokens, y is x shifted by one."""
    g = torch.Generator().manual_seed(seed)
    windows = torch.randint(0, V, (rows, block + 1), generator=g)
    return windows[:, :-1].clone(), windows[:, 1:].clone()


END = 1


def pairs_batch(
    examples: list[tuple[list[int], list[int]]], block: int = 12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs packing: prompt, answer, end token, padded with the end token; y is -1 on prompt and padding."""
    x = torch.full((len(examples), block), END)
    y = torch.full((len(examples), block), -1)
    for i, (prompt, answer) in enumerate(examples):
        seq = torch.tensor(prompt + answer + [END])[: block + 1]
        n = len(seq)
        x[i, : n - 1], y[i, : n - 1] = seq[:-1], seq[1:]
        y[i, : len(prompt) - 1] = -1
    return x, y


def test_an_honest_stream_batch() -> None:
    checks = BatchChecks(V, pairs=False)
    checks.check(*stream_batch(), "train batch 0")
    s = checks.summary()
    assert s["batches"] == 1 and s["out_of_range"] == 0
    assert s["aligned_share"] == 1.0 and s["masked_share"] == 0.0 and s["padded_share"] == 0.0
    assert s["leaked_share"] is None and s["truncated_share"] is None
    assert 0 < s["top_target_share"] < 0.5 and s["distinct_targets"] > 10


def test_unshifted_targets_are_not_aligned_and_sit_at_their_own_position() -> None:
    x, _ = stream_batch()
    checks = BatchChecks(V, pairs=False)
    checks.check(x, x.clone(), "batch")
    s = checks.summary()
    assert s["aligned_share"] < 0.3 and s["same_position_share"] == 1.0


def test_all_masked_targets() -> None:
    x, y = stream_batch()
    checks = BatchChecks(V, pairs=False)
    checks.check(x, torch.full_like(y, -1), "batch")
    s = checks.summary()
    assert s["masked_share"] == 1.0 and s["aligned_share"] is None and s["top_target_share"] is None


@pytest.mark.parametrize("where", ["x", "y"])
def test_ids_out_of_range_stop_with_a_message(where: str) -> None:
    x, y = stream_batch()
    (x if where == "x" else y)[0, 3] = V + 4
    checks = BatchChecks(V, pairs=False)
    with pytest.raises(UnfitBatch, match=r"val batch 2 has 1 token ids outside the vocabulary \[0, 20\)"):
        checks.check(x, y, "val batch 2")
    assert checks.summary()["out_of_range"] == 1 and "largest 24" in checks.first_problem


def test_mismatched_shapes_stop() -> None:
    x, y = stream_batch()
    with pytest.raises(UnfitBatch, match="shape"):
        BatchChecks(V, pairs=False).check(x, y[:, :-1], "batch")


def test_pairs_rows_measure_padding_truncation_and_leakage() -> None:
    examples = [
        ([5, 6, 7], [8, 9]),  # fits: 6 tokens in a block of 12
        ([5, 8, 9, 7], [8, 9]),  # the answer is written inside the prompt
        ([4] * 10, [2, 3, 2, 3]),  # 15 tokens: cut at the block
    ]
    checks = BatchChecks(V, pairs=True)
    checks.check(*pairs_batch(examples), "batch")
    s = checks.summary()
    assert s["aligned_share"] == 1.0
    assert s["leak_checkable"] == 3 and s["leaked"] == 1
    assert s["truncated_share"] == pytest.approx(1 / 3)
    # Padding: rows 1 and 2 end after 5 and 6 targets of 12; row 3 fills the block.
    assert s["padded_share"] == pytest.approx((12 - 5 + 12 - 6) / 36)


def test_counts_survive_a_checkpoint() -> None:
    checks = BatchChecks(V, pairs=True)
    checks.check(*pairs_batch([([5, 6], [7, 8])]), "batch")
    restored = BatchChecks(V, pairs=True)
    restored.load_state_dict(checks.state_dict())
    assert restored.summary() == checks.summary()


def test_padding_that_takes_loss_is_told_from_a_cut_answer() -> None:
    x, y = pairs_batch([([5, 6], [7, 8]), ([5, 6, 7], [8, 9]), ([4] * 8, [2, 3, 2, 3, 2])])
    last = torch.where(y != -1, torch.arange(12), -1).max(dim=1).values
    for row in range(2):  # rows 0 and 1 padded in y too: their end token repeated to the end of the block
        y[row, last[row] + 1 :] = END
    checks = BatchChecks(V, pairs=True)
    checks.check(x, y, "batch")
    s = checks.summary()
    assert s["pad_rows"] == 2 and s["pad_row_share"] == pytest.approx(2 / 3) and s["pad_token"] == END
    assert s["truncated_share"] == pytest.approx(1 / 3)  # only the long row is cut
    assert s["padded_share"] == 0.0


def test_rows_with_no_target_are_cut_not_padding() -> None:
    x, y = pairs_batch([([5] * 14, [7, 8]), ([5, 6], [7, 8])])
    checks = BatchChecks(V, pairs=True)
    checks.check(x, y, "batch")
    s = checks.summary()
    assert s["untrained_rows"] == 1 and s["untrained_row_share"] == 0.5
    assert s["truncated_share"] == 0.5
    assert s["padded_share"] == pytest.approx(8 / 24)  # the second row ends at position 3 of 12


def test_the_unigram_baseline_counts_trained_batches_only() -> None:
    checks = BatchChecks(V, pairs=False)
    x = torch.zeros(2, 8, dtype=torch.long)
    checks.check(x, torch.tensor([[3, 4] * 4, [3, 4] * 4]), "train batch", trained=True)
    checks.check(x, torch.arange(16).view(2, 8), "val batch")
    assert checks.summary()["train_unigram_nats"] == pytest.approx(math.log(2))


def text_batches(tokens: torch.Tensor, seed: int, n: int = 6, rows: int = 8, block: int = 32) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        starts = torch.randint(0, len(tokens) - block - 1, (rows,), generator=g)
        windows = torch.stack([tokens[s : s + block + 1] for s in starts.tolist()])
        out.append((windows[:, :-1], windows[:, 1:]))
    return out


def overlap_of(train: torch.Tensor, val: torch.Tensor) -> dict:
    overlap = Overlap(ngram=16, pairs=False, block_size=32)
    for batch in text_batches(train, seed=0, n=60):
        overlap.add_seen(*batch)
    for batch in text_batches(val, seed=1):
        overlap.add_probe("val", *batch)
    for batch in text_batches(train, seed=2):
        overlap.add_probe("fresh", *batch)
    return overlap.summary()


def test_val_copied_from_train_overlaps_and_held_out_val_does_not() -> None:
    g = torch.Generator().manual_seed(5)
    train = torch.randint(0, 50, (400,), generator=g)
    held_out = torch.randint(0, 50, (400,), generator=g)
    copied = overlap_of(train, train.clone())
    assert copied["ratio"] > 0.9 and copied["fresh_hits"] > 0.5
    separate = overlap_of(train, held_out)
    assert separate["ratio"] < 0.05


def test_overlap_needs_enough_probes() -> None:
    overlap = Overlap(ngram=16, pairs=False, block_size=32)
    assert overlap.summary()["ratio"] is None
    x, y = stream_batch(block=32)
    overlap.add_seen(x, y)
    overlap.add_probe("val", x, y)
    assert overlap.summary()["ratio"] is None  # a handful of probes says nothing
    assert not overlap.enough_probes("val") and not overlap.enough_probes("fresh")


def test_the_end_of_run_probing_stops_once_fresh_probes_hit_what_was_seen() -> None:
    g = torch.Generator().manual_seed(7)
    train = torch.randint(0, 50, (400,), generator=g)
    overlap = Overlap(ngram=16, pairs=False, block_size=32)
    for batch in text_batches(train, seed=2):
        overlap.add_probe("fresh", *batch)
    assert overlap.enough_probes("fresh") and not overlap.enough_seen()  # nothing seen yet
    for batch in text_batches(train, seed=0, n=60):
        overlap.add_seen(*batch)
    assert overlap.enough_seen()


def test_pairs_overlap_is_by_whole_example() -> None:
    overlap = Overlap(ngram=32, pairs=True, block_size=12)
    seen = pairs_batch([([5, 6, k], [k, 6]) for k in range(2, 20)])
    overlap.add_seen(*seen)
    assert len(overlap.hashes(*seen)) == 18
    overlap.add_probe("fresh", *seen)
    other = pairs_batch([([5, 7, k], [k, 6]) for k in range(2, 20)])
    overlap.add_probe("val", *other)
    assert overlap.summary()["val_hits"] == 0.0 and overlap.summary()["fresh_hits"] == 1.0
