"""Asking a trained model: a checkpoint's weights and the tokenizer it carries, with no service running.

``simtrain sample`` and the generate server (``trainer_service.generate_server``) both sample through
:class:`Sampler`. A checkpoint saved before checkpoints carried their tokenizer, or by a job whose data
service does not offer ``GetTokenizer``, is refused with :class:`CheckpointError` saying so.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_service import tokenizers
from data_service.errors import DataError
from data_service.tokenizers.base import Tokenizer
from trainer_service.checkpoint import CheckpointError, load_checkpoint
from trainer_service.model import GPT, GPTConfig


class PromptError(ValueError):
    """The prompt cannot be put to this model (its tokenizer cannot encode it, or it is empty)."""


@dataclass
class Completion:
    text: str
    tokens: int  # new tokens generated, up to and without the end token
    stopped: bool  # the model ended its answer with the end token (pairs data) before max_new_tokens

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tokens": self.tokens, "stopped": self.stopped}


class Sampler:
    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        step: int | None = None,
        retrieval: dict[str, str] | None = None,
    ):
        """``retrieval``: the data service and dataset whose index gave each trained row its context, for
        a checkpoint of a retrieval dataset (the prompt then needs that context first)."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step = step
        self.retrieval = retrieval
        self.device = next(model.parameters()).device

    @classmethod
    def from_checkpoint(cls, path: Path, device: str = "cpu") -> Sampler:
        """The model and tokenizer of the checkpoint at ``path``; CheckpointError names what is missing."""
        state = load_checkpoint(path)
        if state is None:
            raise CheckpointError(f"{path}: no such file")
        return cls.from_state(state, str(path), device)

    @classmethod
    def from_state(cls, state: dict[str, Any], name: str, device: str = "cpu") -> Sampler:
        if not isinstance(state.get("model"), dict) or not isinstance(state.get("model_config"), dict):
            raise CheckpointError(f"{name} is not a simtrain checkpoint: it has no model or model_config")
        saved = state.get("tokenizer")
        if saved is None:
            raise CheckpointError(
                f"{name} carries no tokenizer: it was saved before checkpoints kept theirs, or by a job "
                "whose data service does not offer GetTokenizer; train the job again (or resume it) to "
                "write a checkpoint that does"
            )
        try:
            tokenizer = tokenizers.load(saved)
        except Exception as e:  # a bad definition may raise anything (HF tokenizers: a plain Exception)
            raise CheckpointError(f"{name} carries a tokenizer that cannot be rebuilt: {e}") from None
        try:
            config = GPTConfig(**state["model_config"]).resolved()
            model = GPT(config)
            model.load_state_dict(state["model"])
        except (TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{name} holds a model that cannot be rebuilt: {e}") from None
        if tokenizer.vocab_size != config.vocab_size:
            raise CheckpointError(
                f"{name}: its tokenizer has {tokenizer.vocab_size} tokens but its model {config.vocab_size}"
            )
        step = state.get("step")
        retrieval = state.get("retrieval")
        if retrieval is not None and not (
            isinstance(retrieval, dict)
            and all(isinstance(retrieval.get(k), str) for k in ("data_service", "dataset_id"))
        ):
            raise CheckpointError(f"{name} names its retrieval index badly: {retrieval!r}")
        return cls(model.to(device), tokenizer, step if isinstance(step, int) else None, retrieval)

    def encode(self, prompt: str) -> list[int]:
        if not prompt:
            raise PromptError("the prompt is empty: give the model some text to continue")
        try:
            ids = self.tokenizer.encode(prompt).tolist()
        except DataError as e:
            raise PromptError(f"this model's tokenizer cannot encode the prompt: {e}") from None
        if not ids:
            raise PromptError("the prompt encodes to no tokens")
        return ids

    @torch.no_grad()
    def complete(
        self,
        prompt: str,
        max_new_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        n: int = 1,
        seed: int | None = None,
        greedy: bool = False,
        context: list[int] | None = None,
    ) -> list[Completion]:
        """``n`` continuations of ``prompt``, sampled (or ``greedy``); each is cut at the end token.
        ``context``: token ids put before the prompt's (a retrieval dataset's passages and marker)."""
        ids = (context or []) + self.encode(prompt)
        idx = torch.tensor([ids] * n, dtype=torch.long, device=self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(idx, max_new_tokens, temperature, do_sample=not greedy, top_k=top_k)
        return [self._cut(row) for row in out[:, len(ids) :].tolist()]

    def _cut(self, new: list[int]) -> Completion:
        """The new tokens as text, up to the first special token (the end of an answer)."""
        base = self.tokenizer.base_vocab_size
        end = next((i for i, t in enumerate(new) if t >= base), None)
        kept = new if end is None else new[:end]
        return Completion(self.tokenizer.decode(kept), len(kept), end is not None)
