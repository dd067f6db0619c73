"""Exact-match accuracy of greedy answers on held-out (val) prompt/answer pairs, decoded to text.

Each pairs row is prompt, answer, end token, padding; y is -1 on the prompt and the padding. So the prompt
is x up to the first target and the reference answer is the targets. The model completes each prompt
greedily until its end token, and the answer counts only if its text equals the reference exactly.
Rows are grouped by prompt length, so each group is one batched ``generate`` call with no padding.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainer_service.device import autocast

SHOWN = 10  # judged pairs listed in the report
EXTRA_TOKENS = 4  # generated past the reference length, so a tokenization of another length can still match


def split_rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference ids with the end token last) per row that holds a whole example."""
    out = []
    T = y.size(1)
    for xs, ys in zip(x.tolist(), y.tolist(), strict=True):
        targets = [t for t, v in enumerate(ys) if v != -1]
        if not targets or targets[-1] == T - 1:  # no answer, or one that may have been cut at the block
            continue
        first, last = targets[0], targets[-1]
        if last - first + 1 != len(targets):  # a conversation of several replies: not one answer
            continue
        out.append((xs[: first + 1], ys[first : last + 1]))
    return out


@torch.no_grad()
def pairs_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    decode: Callable[[list[int]], str],
    *,
    autocast_dtype: torch.dtype | None = None,
    on_generate: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Judge every whole example among the rows of ``(x, y)``; ``on_generate`` wraps each generate call."""
    device = next(model.parameters()).device
    rows = split_rows(x, y)
    if not rows:
        return {"examples": 0, "correct": 0, "accuracy": None, "items": [], "skipped": "no whole example"}
    groups: dict[int, list[int]] = defaultdict(list)
    for i, (prompt, _) in enumerate(rows):
        groups[len(prompt)].append(i)
    answers: dict[int, list[int]] = {}
    was_training = model.training
    model.eval()
    try:
        for members in groups.values():
            prompts = torch.tensor([rows[i][0] for i in members], device=device)
            new = max(len(rows[i][1]) for i in members) + EXTRA_TOKENS
            with on_generate() if on_generate else contextlib.nullcontext(), autocast(device, autocast_dtype):
                out = model.generate(prompts, new, do_sample=False)
            for i, ids in zip(members, out[:, prompts.size(1) :].tolist(), strict=True):
                answers[i] = ids
    finally:
        model.train(was_training)
    correct, items = 0, []
    for i, (prompt, reference) in enumerate(rows):
        end = reference[-1]
        got = answers[i]
        stopped = end in got
        got = got[: got.index(end)] if stopped else got
        expected_text, got_text = decode(reference[:-1]), decode(got)
        ok = stopped and got_text == expected_text
        correct += ok
        if len(items) < SHOWN:
            items.append({"prompt": decode(prompt), "expected": expected_text, "got": got_text, "ok": ok})
    return {"examples": len(rows), "correct": correct, "accuracy": correct / len(rows), "items": items}
