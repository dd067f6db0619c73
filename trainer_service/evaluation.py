"""Evaluation and samples of a job run: the split losses (and the spec's probes) at every evaluation step,
the report's samples and, for pairs, the exact-match accuracy of greedy answers on held-out pairs."""

from __future__ import annotations

import logging
from typing import Any

import torch

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.jobs import JobSpec, TrainingSpec
from trainer_service.data_client import DataClient
from trainer_service.device import autocast
from trainer_service.model import GPT
from trainer_service.parallel import Ranks, gather_floats
from trainer_service.probes import Probes
from trainer_service.report.accuracy import pairs_accuracy
from trainer_service.report.monitor import FitMonitor
from trainer_service.trainer import Trainer

log = logging.getLogger(__name__)

N_SAMPLES = 3
SAMPLE_PROMPT_TOKENS = 16
SAMPLE_NEW_TOKENS = 120


class Evaluation:
    """The evaluation half of :class:`trainer_service.job_runner.JobRun`."""

    train_spec: TrainingSpec
    spec: JobSpec
    ranks: Ranks
    client: DataClient
    info: pb.DatasetInfo
    dataset_id: str
    model: GPT
    trainer: Trainer
    monitor: FitMonitor
    device: torch.device
    curve: dict[str, list[list[float]]]
    unfit: str | None
    probes: Probes | None

    @torch.no_grad()
    def _evaluate(self, step: int) -> None:
        """Mean loss over ``eval_iters`` fixed batches of each split, dropout off; each rank its shard."""
        with self.trainer.trace.span("eval"):
            losses = [self._eval_loss(split) for split in ("train", "val")]
            rows = gather_floats(self.ranks, losses, self.device)
        train_loss, val_loss = (sum(r[i] for r in rows) / len(rows) for i in range(2))
        self.curve["val"].append([step, val_loss])
        self.curve["train_eval"].append([step, train_loss])
        if self.ranks.is_main:
            self._log_metrics({"step": step, "val/loss": val_loss, "train/eval_loss": train_loss})
            log.info("step %d: val loss %.4f, train loss %.4f", step, val_loss, train_loss)
        if self.probes:  # rank 0 only: the job's spec asks these prompts at every evaluation
            self.probes.answer(
                self.model, step, self.trainer.autocast_dtype, lambda: self.trainer.trace.span("generate")
            )
            if line := self.probes.summary_line(step):
                log.info("%s", line)

    def _eval_loss(self, split: str) -> torch.Tensor:
        t = self.train_spec
        self.model.eval()
        total, targets = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        batches = self.client.batches(
            self.dataset_id,
            split,
            t.batch_size,
            t.block_size,
            t.seed,
            start_step=0,
            num_steps=t.eval_iters,
            rank=self.ranks.rank,
            world_size=self.ranks.world_size,
        )
        probe = split == "val" and not self.monitor.val_probed  # every evaluation reads the same batches
        self.monitor.val_probed |= probe
        try:
            for x, y in self.monitor.stream(batches, "val" if probe else f"{split} eval"):
                y = y.to(self.device)
                with autocast(self.device, self.trainer.autocast_dtype):
                    _, loss = self.model(x.to(self.device), y)
                n = (y != -1).sum()
                total += loss.float() * n
                targets += n
        finally:
            self.model.train()
        return total / targets  # per target, as in training; NaN when no target takes loss

    @torch.no_grad()
    def _samples(self, accuracy: dict[str, Any] | None) -> list[dict[str, str]]:
        """Prompts and the model's completions as text: for pairs, held-out prompts and greedy answers."""
        if self.unfit:  # bad ids or NaN weights: nothing worth sampling
            return []
        if accuracy and accuracy.get("items"):
            items = accuracy["items"][:N_SAMPLES]
            return [{"prompt": i["prompt"], "completion": i["got"], "expected": i["expected"]} for i in items]
        t = self.train_spec
        stream = self.client.batches(self.dataset_id, "val", N_SAMPLES, t.block_size, t.seed, 0, 1)
        [(x, _)] = list(self.monitor.stream(stream, "sample"))
        prompts = x[:, :SAMPLE_PROMPT_TOKENS].to(self.device)
        self.model.eval()
        torch.manual_seed(t.seed)
        with self.trainer.trace.span("generate"), autocast(self.device, self.trainer.autocast_dtype):
            out = self.model.generate(prompts, SAMPLE_NEW_TOKENS, temperature=0.8, do_sample=True, top_k=20)
            rows = out.tolist()
        samples = []
        for row in rows:
            samples.append(
                {
                    "prompt": self.client.decode(self.dataset_id, row[:SAMPLE_PROMPT_TOKENS]),
                    "completion": self.client.decode(self.dataset_id, row[SAMPLE_PROMPT_TOKENS:]),
                }
            )
        return samples

    @torch.no_grad()
    def _accuracy(self) -> dict[str, Any] | None:
        """Pairs only: exact-match accuracy of greedy answers on held-out pairs."""
        t, wanted = self.train_spec, self.spec.checks.accuracy_examples
        if self.info.packing != "pairs" or wanted == 0 or self.unfit:
            return None
        held_out = next((s.num_examples for s in self.info.splits if s.name == "val"), 0)
        if held_out == 0:
            return {"examples": 0, "correct": 0, "accuracy": None, "items": [], "skipped": "val has no pairs"}
        stream = self.client.batches(
            self.dataset_id, "val", min(wanted, held_out), t.block_size, t.seed, 0, 1
        )
        [(x, y)] = list(self.monitor.stream(stream, "accuracy"))
        return pairs_accuracy(
            self.model,
            x,
            y,
            lambda ids: self.client.decode(self.dataset_id, ids),
            autocast_dtype=self.trainer.autocast_dtype,
            on_generate=lambda: self.trainer.trace.span("generate"),
        )
