"""Do the answers of a pairs dataset carry information? Counted over the distinct examples trained on.

A dataset whose every completion is "yes" trains to 100 % accuracy and teaches nothing: the model need not
read the prompt. So the trainer keeps, for each distinct (prompt, answer) row it trains on, a hash of both,
and the report judges how the answers spread: how many distinct answers there are per example, the share
of the commonest one, the entropy of answers, and their entropy given the prompt (a prompt that appears
with several answers makes the answer a coin toss). Hashes are weighted sums of token ids with fixed
random weights, so they are the same in every process and survive a resume.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import torch

from trainer_service.report.batch_checks import last_real

MAX_EXAMPLES = 1 << 16  # distinct examples kept; later ones are not added
_WEIGHTS_SEED = 20241204


class Answers:
    def __init__(self, block_size: int) -> None:
        g = torch.Generator().manual_seed(_WEIGHTS_SEED)
        self._weights = torch.randint(1, 2**62, (2, block_size), generator=g, dtype=torch.int64)
        self.examples: set[tuple[int, int]] = set()  # (prompt hash, answer hash)
        self.answer_ids: dict[int, list[int]] = {}  # answer hash -> its token ids, to show it

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Hash each row's prompt (x up to the first target) and answer (the targets, end token included)."""
        if len(self.examples) >= MAX_EXAMPLES:
            return
        T = y.size(1)
        real = y != -1
        t = torch.arange(T)
        first = torch.where(real, t, T).min(dim=1).values
        last = last_real(real)
        in_prompt = t <= first.unsqueeze(1)
        from_first = t - first.unsqueeze(1)
        in_answer = (from_first >= 0) & (t <= last.unsqueeze(1))
        prompt = ((x.long() + 1) * self._weights[0] * in_prompt).sum(1)
        answer_weights = self._weights[1][from_first.clamp(0, T - 1)]
        answer = ((y.long() + 1) * answer_weights * in_answer).sum(1)
        for row in (last >= 0).nonzero().flatten().tolist():
            a = int(answer[row])
            self.examples.add((int(prompt[row]), a))
            if a not in self.answer_ids:
                self.answer_ids[a] = y[row, int(first[row]) : int(last[row]) + 1].tolist()

    def summary(self) -> dict[str, Any]:
        """Counts, the commonest answer (ids, end token included) and its share, and entropies in bits."""
        n = len(self.examples)
        if not n:
            return {"examples": 0}
        answers = Counter(a for _, a in self.examples)
        top, top_count = answers.most_common(1)[0]
        by_prompt: dict[int, Counter[int]] = defaultdict(Counter)
        for p, a in self.examples:
            by_prompt[p][a] += 1
        conditional = sum(sum(c.values()) / n * _entropy_bits(c) for c in by_prompt.values())
        return {
            "examples": n,
            "distinct_answers": len(answers),
            "answers_per_example": len(answers) / n,
            "top_answer_ids": self.answer_ids[top],
            "top_answer_share": top_count / n,
            "answer_entropy_bits": _entropy_bits(answers),
            "answer_entropy_given_prompt_bits": conditional,
        }

    def state_dict(self) -> dict[str, Any]:
        examples = torch.tensor(sorted(self.examples), dtype=torch.int64).view(-1, 2)
        return {"examples": examples, "answer_ids": dict(self.answer_ids)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.examples = {(p, a) for p, a in state["examples"].tolist()}
        self.answer_ids = dict(state["answer_ids"])


def _entropy_bits(counts: Counter[int]) -> float:
    total = sum(counts.values())
    return max(0.0, -sum(c / total * math.log2(c / total) for c in counts.values()))  # never -0.0
