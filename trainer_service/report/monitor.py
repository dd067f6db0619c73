"""What a job keeps for its fit report while it trains: batch checks, split overlap, finiteness, pre-flight.

The job runner passes every batch stream through :meth:`FitMonitor.stream` and calls :meth:`on_step` after
every optimizer step. Finiteness is accumulated on the device, so it costs no sync; the runner reads it
at the steps where it syncs anyway. Everything here goes into the checkpoint, so a resumed job's report
covers the whole job. The training stream is checked in the prefetch thread while evaluation streams are
checked in the main one, so the counts are updated under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch

from simtrain.jobs import ChecksSpec
from trainer_service.report.answers import Answers
from trainer_service.report.batch_checks import Batch, BatchChecks
from trainer_service.report.chat_turns import ChatTurns
from trainer_service.report.overlap import Overlap


class FitMonitor:
    def __init__(
        self,
        vocab_size: int,
        pairs: bool,
        block_size: int,
        spec: ChecksSpec,
        markers: dict[str, int] | None = None,  # chat template marker → its id, where it is one token
    ) -> None:
        self.spec = spec
        self.batches = BatchChecks(vocab_size, pairs)
        self.chat = ChatTurns(markers)
        self.overlap = Overlap(spec.overlap_ngram, pairs, block_size)
        self.answers = Answers(block_size) if pairs else None
        self.preflight: dict[str, Any] | None = None
        self.val_probed = False
        self._bad: torch.Tensor | None = None  # [steps with a non-finite loss or grad norm, first such step]
        self._lock = threading.Lock()

    def stream(self, batches: Iterator[Batch], role: str, first_step: int = 0) -> Iterator[Batch]:
        """Check each batch. ``role``: "train" (trained on: hashed as seen), "more train" (not trained on,
        hashed as seen), "val" or "fresh" (probed for overlap), anything else (checked only)."""
        for step, (x, y) in enumerate(batches, start=first_step):
            with self._lock:
                self.batches.check(x, y, f"{role} batch {step}", trained=role == "train")
                if role == "train":
                    self.overlap.add_seen(x, y)
                    self.chat.add(x, y)
                    if self.answers is not None:
                        self.answers.add(x, y)
                elif role == "more train":
                    self.overlap.add_seen(x, y)
                elif role in ("val", "fresh"):
                    self.overlap.add_probe(role, x, y)
            yield x, y

    def on_step(self, loss: torch.Tensor, grad_norm: torch.Tensor | None, step: int) -> None:
        """Count a step whose loss or gradient norm is not finite, without a sync."""
        bad = ~torch.isfinite(loss.detach().float())
        if grad_norm is not None:
            bad = bad | ~torch.isfinite(grad_norm.detach().float())
        if self._bad is None:
            self._bad = torch.tensor([0, -1], dtype=torch.int64, device=loss.device)
        first = torch.where((self._bad[1] < 0) & bad, step, self._bad[1])
        self._bad = torch.stack([self._bad[0] + bad.long(), first])

    def nonfinite_steps(self) -> torch.Tensor:
        """The count as a 0-dim tensor (for the runner's gather; reading it syncs)."""
        return self._bad[0] if self._bad is not None else torch.zeros((), dtype=torch.int64)

    def nonfinite(self) -> tuple[int, int | None]:
        """(steps with a non-finite loss or gradient norm, the first of them)."""
        if self._bad is None:
            return 0, None
        count, first = self._bad.tolist()
        return count, (first if first >= 0 else None)

    def state_dict(self) -> dict[str, Any]:
        with self._lock:  # copies: the prefetch thread goes on counting while the checkpoint is written
            return {
                "batches": {
                    k: v.clone() if torch.is_tensor(v) else v for k, v in self.batches.state_dict().items()
                },
                "overlap": self.overlap.state_dict(),
                "answers": self.answers.state_dict() if self.answers is not None else None,
                "chat": self.chat.state_dict(),
                "preflight": self.preflight,
            }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])
        self.overlap.load_state_dict(state["overlap"])
        if self.answers is not None and state.get("answers"):
            self.answers.load_state_dict(state["answers"])
        if state.get("chat"):
            self.chat.load_state_dict(state["chat"])
        self.preflight = state.get("preflight")
