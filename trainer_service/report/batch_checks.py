"""Checks on every batch the trainer receives: ids in range, targets aligned, masking, leakage, token mix.

Any server may stand in for the data service, so the trainer trusts no batch: each one is measured here,
in the prefetch thread (off the training loop), with a few vectorised tensor ops. The counts feed the
report; an id out of range stops training at once, since the embedding lookup would crash (or, on CUDA,
assert) on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from trainer_service.data_client import DataServiceError

Batch = tuple[torch.Tensor, torch.Tensor]
LEAK_MIN_TOKENS = 2  # a one-token answer found in its prompt says little
# A pairs row whose targets end in one token repeated this often, to the end of the block, is padding that
# takes loss (real packing masks padding with -1). Real answers cut at the block rarely end in such a run.
PAD_RUN = 4


class UnfitBatch(DataServiceError):
    """A batch no model can train on (ids out of range, a malformed shape); the message says which."""


def last_real(real: torch.Tensor) -> torch.Tensor:
    """The position of each row's last real target (``real``: y != -1, [B, T]); -1 for a row with none."""
    return torch.where(real, torch.arange(real.size(1)), -1).max(dim=1).values


@dataclass
class BatchCounts:
    """Sums over every checked batch; shares are computed from them in the report."""

    batches: int = 0
    positions: int = 0  # target positions (batch_size x block_size per batch)
    out_of_range: int = 0  # ids in x outside [0, vocab), or in y outside [-1, vocab)
    masked: int = 0  # targets of -1
    padded: int = 0  # -1 targets after a row's last real target (pairs padding)
    untrained_rows: int = 0  # pairs rows with no real target at all: the prompt fills the block
    pad_rows: int = 0  # pairs rows whose targets end in PAD_RUN or more of one token: padding takes loss
    checkable: int = 0  # real targets that have a next input to compare with
    aligned: int = 0  # ... that equal that next input: y[t] == x[t + 1]
    same_position: int = 0  # real targets equal to the input at their own position: y[t] == x[t]
    targets: int = 0  # real targets
    rows: int = 0
    full_rows: int = 0  # pairs rows with a target in the block's last position: filled, maybe cut
    leak_checkable: int = 0  # pairs rows whose answer is long enough to look for
    leaked: int = 0  # ... whose answer appears verbatim in the prompt


class BatchChecks:
    """Measures batches of one dataset (``pairs``: one prompt/answer example per row)."""

    def __init__(self, vocab_size: int, pairs: bool) -> None:
        self.vocab_size = vocab_size
        self.pairs = pairs
        self.counts = BatchCounts()
        self.target_counts = torch.zeros(vocab_size, dtype=torch.int64)
        # Pairs: the last target of each row, for rows that end inside the block (their end token) and rows
        # that fill it. A filling row whose last target is not the end token was cut short.
        self.last_of_short = torch.zeros(vocab_size, dtype=torch.int64)
        self.last_of_full = torch.zeros(vocab_size, dtype=torch.int64)
        self.pad_tokens = torch.zeros(vocab_size, dtype=torch.int64)  # the token of each padding run
        self.train_targets = torch.zeros(vocab_size, dtype=torch.int64)  # targets of trained batches only
        self.first_problem: str | None = None

    def check(self, x: torch.Tensor, y: torch.Tensor, where: str, trained: bool = False) -> None:
        """Measure one batch; raise UnfitBatch if it cannot be trained on. ``where`` names it in messages;
        ``trained``: the batch is trained on (its targets make the unigram baseline)."""
        if x.shape != y.shape or x.dim() != 2:
            self._fail(f"{where}: x has shape {tuple(x.shape)} but y {tuple(y.shape)}; both must be [B, T]")
        c, vocab = self.counts, self.vocab_size
        c.batches += 1
        c.positions += y.numel()
        bad = int(((x < 0) | (x >= vocab)).sum()) + int(((y < -1) | (y >= vocab)).sum())
        if bad:
            c.out_of_range += bad
            top = max(int(x.max()), int(y.max()))
            self._fail(
                f"{where} has {bad} token ids outside the vocabulary [0, {vocab}) (largest {top}): the data "
                "service's batches do not match its tokenizer"
            )
        real = y != -1
        c.masked += int((~real).sum())
        c.targets += int(real.sum())
        c.same_position += int((real & (y == x)).sum())
        head = real[:, :-1]
        c.checkable += int(head.sum())
        c.aligned += int((head & (y[:, :-1] == x[:, 1:])).sum())
        last = last_real(real)
        c.padded += int((y.size(1) - 1 - last)[last >= 0].sum())  # -1 after the last target: packing's fill
        c.rows += y.size(0)
        counts = torch.bincount(y[real].long(), minlength=vocab)
        self.target_counts += counts
        if trained:
            self.train_targets += counts
        if self.pairs:
            self._leakage(x, y, real)
            self._last_targets(y, last)

    def _fail(self, message: str) -> None:
        if self.first_problem is None:
            self.first_problem = message
        raise UnfitBatch(message)

    def _last_targets(self, y: torch.Tensor, last: torch.Tensor) -> None:
        """Pairs: how each row ends. A row that ends inside the block closes with the end token; one that
        fills it was maybe cut, unless its targets end in a padding run (which closes it just the same)."""
        T = y.size(1)
        rows = last >= 0
        final = y.gather(1, last.clamp(min=0).unsqueeze(1)).squeeze(1).long()
        tail = y.flip(1)
        run = (tail == tail[:, :1]).long().cumprod(dim=1).sum(dim=1)  # length of the last target's run
        padded = rows & (last == T - 1) & (run >= min(PAD_RUN, T))
        full = rows & (last == T - 1) & ~padded
        c = self.counts
        c.untrained_rows += int((~rows).sum())
        c.pad_rows += int(padded.sum())
        c.full_rows += int(full.sum())
        self.pad_tokens += torch.bincount(final[padded], minlength=self.vocab_size)
        self.last_of_full += torch.bincount(final[full], minlength=self.vocab_size)
        self.last_of_short += torch.bincount(final[rows & ~full], minlength=self.vocab_size)

    def truncated_share(self) -> float | None:
        """Pairs: the share of example rows cut at the block: filled rows whose last target is not the end
        token, and rows with no target at all (the prompt alone fills the block, the answer is cut off)."""
        untrained = self.counts.untrained_rows
        rows = int(self.last_of_full.sum() + self.last_of_short.sum()) + untrained
        if not rows:
            return None
        if not int(self.last_of_short.sum()):  # no row ends inside the block: every one may be cut
            return (int(self.last_of_full.sum()) + untrained) / rows
        end = int(self.last_of_short.argmax())  # the end token closes every row that fits
        return (int(self.last_of_full.sum() - self.last_of_full[end]) + untrained) / rows

    def _leakage(self, x: torch.Tensor, y: torch.Tensor, real: torch.Tensor) -> None:
        """Pairs rows: is the answer (the targets but the end token) written out inside the prompt?"""
        for row in range(y.size(0)):
            where = real[row].nonzero().flatten()
            if len(where) <= LEAK_MIN_TOKENS:
                continue
            first, last = int(where[0]), int(where[-1])
            answer = y[row, first:last].to(torch.int32)  # the last target is the end token
            prompt = x[row, : first + 1].to(torch.int32)  # x[first] is the prompt's last token
            self.counts.leak_checkable += 1
            self.counts.leaked += _contains(prompt.numpy().tobytes(), answer.numpy().tobytes())

    def summary(self) -> dict[str, Any]:
        """The counts and the shares the report judges."""
        c = self.counts
        top = int(self.target_counts.argmax()) if c.targets else None
        target_nats = _entropy_nats(self.target_counts)
        target_rows = c.rows - c.untrained_rows
        return {
            **{f.name: getattr(c, f.name) for f in fields(c)},
            "masked_share": _share(c.masked, c.positions),
            "padded_share": _share(c.padded, c.positions),
            "aligned_share": _share(c.aligned, c.checkable),
            "same_position_share": _share(c.same_position, c.targets),
            "leaked_share": _share(c.leaked, c.leak_checkable),
            "truncated_share": self.truncated_share() if self.pairs else None,
            "untrained_row_share": _share(c.untrained_rows, c.rows) if self.pairs else None,
            "pad_row_share": _share(c.pad_rows, target_rows) if self.pairs else None,
            "pad_token": int(self.pad_tokens.argmax()) if c.pad_rows else None,
            "distinct_targets": int((self.target_counts > 0).sum()),
            "top_target": top,
            "top_target_share": _share(int(self.target_counts.max()), c.targets) if c.targets else None,
            "target_entropy_bits": target_nats / math.log(2) if target_nats is not None else None,
            "train_unigram_nats": _entropy_nats(self.train_targets),
            "first_problem": self.first_problem,
        }

    def state_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "counts": {f.name: getattr(c, f.name) for f in fields(c)},
            "targets": self.target_counts,
            "last_of_short": self.last_of_short,
            "last_of_full": self.last_of_full,
            "pad_tokens": self.pad_tokens,
            "train_targets": self.train_targets,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = BatchCounts(**state["counts"])
        self.target_counts = state["targets"].clone()
        self.last_of_short = state["last_of_short"].clone()
        self.last_of_full = state["last_of_full"].clone()
        # Checkpoints written before these counts existed resume with them at zero.
        self.pad_tokens = state.get("pad_tokens", torch.zeros_like(self.pad_tokens)).clone()
        self.train_targets = state.get("train_targets", torch.zeros_like(self.train_targets)).clone()


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _entropy_nats(counts: torch.Tensor) -> float | None:
    """The entropy of the token distribution ``counts`` describes: what a unigram model's loss would be."""
    total = int(counts.sum())
    if not total:
        return None
    p = counts[counts > 0].double() / total
    return float(-(p * p.log()).sum())


def _contains(haystack: bytes, needle: bytes, width: int = 4) -> bool:
    """Whether ``needle`` occurs in ``haystack`` at a token boundary (both packed ``width``-byte ids)."""
    at = haystack.find(needle)
    while at != -1:
        if at % width == 0:
            return True
        at = haystack.find(needle, at + 1)
    return False
