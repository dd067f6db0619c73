"""Probes: prompts from the job spec that the model answers greedily at every evaluation.

The report then shows how each answer changed over training, and where the spec gives the expected
answer, scores it three ways: ``exact`` (the answer, up to the end token, is the expected text),
``prefix`` (the answer starts with it: what a model trained on running text can do) and
``token_accuracy`` (the share of the expected tokens the model gave at their place).

A prompt the tokenizer cannot encode is no reason to stop training: that probe carries its error, the
others are answered. On a retrieval dataset each prompt is asked after the context its index finds for it
(the data service's Retrieve), as its rows are trained; the report shows that context with the probe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from simtrain.jobs import ProbeSpec
from trainer_service.device import autocast
from trainer_service.model import GPT

EXTRA_TOKENS = 4  # answered past the expected length, so a longer wrong answer is not cut to a right one
DEFAULT_NEW_TOKENS = 32
SHOWN_STEPS = 6  # the evaluation steps a report's probe tables show (all answers stay in the JSON)


@dataclass
class Codec:
    """Text to ids and back with the job's tokenizer, and the ids that end an answer (pairs' end token)."""

    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    ends: frozenset[int] = frozenset()


@dataclass
class Context:
    """What goes before a prompt on a retrieval dataset: its token ids (passages, then the prompt marker),
    and the passages' text for a person to read."""

    tokens: list[int]
    text: str


def score(answer_ids: list[int], answer: str, expected_ids: list[int], expected: str) -> dict[str, Any]:
    """How close an answer is to the expected one, three ways."""
    matched = sum(a == e for a, e in zip(answer_ids, expected_ids, strict=False))
    return {
        "exact": answer == expected,
        "prefix": answer.startswith(expected),
        "token_accuracy": matched / len(expected_ids) if expected_ids else None,
    }


class Probes:
    def __init__(
        self,
        specs: list[ProbeSpec],
        codec: Codec,
        contexts: list[Context] | None = None,
        note: str | None = None,
    ):
        """``contexts``: one per spec, put before its prompt; ``note``: why they are missing where the
        dataset's rows have them."""
        self.specs = specs
        self.codec = codec
        self.contexts = contexts
        self.note = note
        self.prompts: list[list[int] | None] = []
        self.expected: list[list[int] | None] = []
        self.errors: list[str | None] = []
        for i, spec in enumerate(specs):
            try:
                prompt = codec.encode(spec.prompt)
                expected = codec.encode(spec.expected) if spec.expected is not None else None
                if not prompt:
                    raise ValueError("the prompt encodes to no tokens")
            except Exception as e:  # the data service's refusal or the local tokenizer's: said, not raised
                self.prompts.append(None)
                self.expected.append(None)
                self.errors.append(f"cannot encode this probe: {e}")
                continue
            self.prompts.append(contexts[i].tokens + prompt if contexts else prompt)
            self.expected.append(expected)
            self.errors.append(None)
        self.answers: list[list[dict[str, Any]]] = [[] for _ in specs]

    def __bool__(self) -> bool:
        return bool(self.specs)

    def _new_tokens(self, i: int) -> int:
        spec, expected = self.specs[i], self.expected[i]
        if spec.max_new_tokens is not None:
            return spec.max_new_tokens
        return len(expected) + EXTRA_TOKENS if expected is not None else DEFAULT_NEW_TOKENS

    @torch.no_grad()
    def answer(
        self, model: GPT, step: int, autocast_dtype: torch.dtype | None = None, span: Any = None
    ) -> list[dict[str, Any]]:
        """Every probe's greedy answer at ``step``, recorded (and returned); ``span`` wraps each generate."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        got = []
        try:
            for i, prompt in enumerate(self.prompts):
                if prompt is None:
                    continue
                idx = torch.tensor([prompt], dtype=torch.long, device=device)
                with span() if span else contextlib.nullcontext(), autocast(device, autocast_dtype):
                    out = model.generate(idx, self._new_tokens(i), do_sample=False)
                ids = out[0, len(prompt) :].tolist()
                end = next((k for k, t in enumerate(ids) if t in self.codec.ends), None)
                ids = ids if end is None else ids[:end]
                try:
                    text = self.codec.decode(ids)
                except Exception as e:  # the data service cannot decode now: this answer is lost, not the job
                    self._record(i, {"step": step, "text": "", "error": f"cannot decode the answer: {e}"})
                    continue
                row: dict[str, Any] = {"step": step, "text": text}
                if self.expected[i] is not None:
                    row |= score(ids, text, self.expected[i], self.specs[i].expected)  # type: ignore[arg-type]
                self._record(i, row)
                got.append(row)
        finally:
            model.train(was_training)
        return got

    def _record(self, i: int, row: dict[str, Any]) -> None:
        """One answer per step: a resumed job that evaluates a step again replaces its answer."""
        history = self.answers[i]
        while history and history[-1]["step"] >= row["step"]:
            history.pop()
        history.append(row)

    def summary_line(self, step: int) -> str | None:
        """For the job's log: how many of the scored probes are right at ``step``."""
        scored = [h[-1] for h in self.answers if h and h[-1]["step"] == step and "exact" in h[-1]]
        if not scored:
            return None
        exact = sum(r["exact"] for r in scored)
        prefix = sum(r["prefix"] for r in scored)
        return f"probes at step {step}: {exact}/{len(scored)} exact, {prefix}/{len(scored)} by prefix"

    def state_dict(self) -> list[list[dict[str, Any]]]:
        return self.answers

    def load_state_dict(self, answers: list[list[dict[str, Any]]]) -> None:
        if len(answers) == len(self.specs):
            self.answers = answers

    def report(self) -> dict[str, Any] | None:
        """For the report: each probe with its answers by step and, where scored, the last scores."""
        if not self.specs:
            return None
        items = []
        for i, (spec, error, history) in enumerate(zip(self.specs, self.errors, self.answers, strict=True)):
            item: dict[str, Any] = {"prompt": spec.prompt, "expected": spec.expected, "answers": history}
            if self.contexts:
                item["context"] = self.contexts[i].text
            if error:
                item["error"] = error
            items.append(item)
        steps = sorted({row["step"] for history in self.answers for row in history})
        report = {"steps": steps, "shown_steps": shown(steps), "items": items, "final": _final_scores(items)}
        if self.note:
            report["note"] = self.note
        return report


def shown(steps: list[int], most: int = SHOWN_STEPS) -> list[int]:
    """The steps a table shows: all of a few, else the first, the last and evenly between."""
    if len(steps) <= most:
        return steps
    return [steps[round(i * (len(steps) - 1) / (most - 1))] for i in range(most)]


def _final_scores(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The scored probes at their last answer: how many exact and by prefix, the mean token accuracy."""
    last = [i["answers"][-1] for i in items if i["expected"] is not None and i["answers"]]
    if not last:
        return None
    accuracies = [r["token_accuracy"] for r in last if r["token_accuracy"] is not None]
    return {
        "scored": len(last),
        "exact": sum(r["exact"] for r in last),
        "prefix": sum(r["prefix"] for r in last),
        "token_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
    }
