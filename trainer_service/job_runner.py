"""Run one job: prepare its data, train, evaluate, checkpoint, and write the first report."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from simtrain.jobs import JobRecord
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from trainer_service.checkpoint import load_checkpoint, save_checkpoint
from trainer_service.data_client import DataClient
from trainer_service.model import GPT, GPTConfig
from trainer_service.prefetch import Prefetcher
from trainer_service.trainer import Trainer, TrainerConfig

log = logging.getLogger(__name__)

N_SAMPLES = 3
SAMPLE_PROMPT_TOKENS = 16
SAMPLE_NEW_TOKENS = 120


class JobInterrupted(Exception):
    """The worker was asked to stop; the job was checkpointed and should run again elsewhere."""


class JobCancelled(Exception):
    """The job's owner cancelled it; the last step was checkpointed."""


class JobRun:
    def __init__(self, job: JobRecord, settings: Settings, queue: JobQueue, should_stop: Callable[[], bool]):
        self.job = job
        self.spec = job.spec
        self.train_spec = job.spec.training
        self.settings = settings
        self.queue = queue
        self.should_stop = should_stop
        self.job_dir = settings.jobs_dir / job.id
        self.checkpoint_path = self.job_dir / "checkpoint.pt"
        self.client = DataClient(
            job.spec.data_service or settings.data_service_addr,
            retries=settings.data_service_retries,
            backoff_s=settings.data_service_backoff_s,
            max_message_bytes=settings.grpc_max_message_bytes,
        )
        self.curve: dict[str, list[list[float]]] = {"train": [], "val": []}
        self.latest: dict[str, float] = {}
        self.interrupted = False
        self.cancelled = False

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            self.client.close()

    def _run(self) -> dict[str, Any]:
        t = self.train_spec
        started = time.time()
        self.info = self.client.prepare(self.spec.dataset)
        self.dataset_id = self.info.dataset_id
        self.queue.update(self.job.id, dataset_id=self.dataset_id)

        torch.manual_seed(t.seed)
        n_layer, n_head, n_embd = self.spec.model.sizes()
        config = GPTConfig(
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            vocab_size=self.info.vocab_size,
            block_size=t.block_size,
            embd_pdrop=self.spec.model.embd_pdrop,
            resid_pdrop=self.spec.model.resid_pdrop,
            attn_pdrop=self.spec.model.attn_pdrop,
        )
        self.model = GPT(config)
        trainer_config = TrainerConfig(
            device=t.device if t.device != "auto" else self.settings.device,
            max_iters=t.max_iters,
            batch_size=t.batch_size,
            learning_rate=t.learning_rate,
            betas=t.betas,
            weight_decay=t.weight_decay,
            grad_norm_clip=t.grad_norm_clip,
            lr_schedule=t.lr_schedule,
            warmup_iters=t.warmup_iters,
        )
        self.trainer = Trainer(trainer_config, self.model, iter(()))
        self.model = self.trainer.model  # the trainer may have moved it to its device
        self._resume()
        if self.trainer.iter_num == 0:
            self._evaluate(step=0)

        batches = Prefetcher(
            self.client.batches(
                self.dataset_id,
                "train",
                t.batch_size,
                t.block_size,
                t.seed,
                start_step=self.trainer.iter_num,
                num_steps=t.max_iters - self.trainer.iter_num,
            )
        )
        self.trainer.batches = batches
        self.trainer.add_callback("on_batch_end", self._on_batch_end)
        self._window_start, self._window_tokens, self._window_wait = time.perf_counter(), 0, 0.0
        try:
            self.trainer.run()
        finally:
            batches.close()
        if self.cancelled:
            raise JobCancelled(f"cancelled at step {self.trainer.iter_num}; checkpoint saved")
        if self.interrupted:
            raise JobInterrupted(f"stopped at step {self.trainer.iter_num}; checkpoint saved")
        return self._report(duration_s=time.time() - started)

    def _resume(self) -> None:
        state = load_checkpoint(self.checkpoint_path)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.trainer.load_state_dict(state["trainer"])
        self.curve = state["curve"]
        self.latest = state["latest"]
        log.info("job %s resumes at step %d", self.job.id, self.trainer.iter_num)

    def _checkpoint(self) -> None:
        """Model, optimizer, step (the data cursor: batches are a function of it), RNG, curves so far."""
        state = {
            "model": self.model.state_dict(),
            "trainer": self.trainer.state_dict(),
            "curve": self.curve,
            "latest": self.latest,
            "model_config": vars(self.model.config),
        }
        save_checkpoint(self.checkpoint_path, state)

    def _on_batch_end(self, trainer: Trainer) -> None:
        t = self.train_spec
        step = trainer.iter_num + 1  # optimizer steps done, counting this one
        loss = trainer.loss.item()
        self._window_tokens += t.batch_size * t.block_size
        self._window_wait += trainer.data_wait_s
        is_eval = step % t.eval_interval == 0 or step == t.max_iters
        if step % t.log_interval == 0 or is_eval:
            elapsed = time.perf_counter() - self._window_start
            row = {
                "step": step,
                "train/loss": loss,
                "lr": trainer.lr,
                "tokens_per_s": self._window_tokens / max(elapsed, 1e-9),
                "data_wait_frac": self._window_wait / max(elapsed, 1e-9),
            }
            self._log(row)
            self.curve["train"].append([step, loss])
            self._window_start, self._window_tokens, self._window_wait = time.perf_counter(), 0, 0.0
        if is_eval:
            self._evaluate(step)
            self._checkpoint()
        if step < t.max_iters and self.queue.cancel_requested(self.job.id):
            self._checkpoint()
            self.cancelled = True
            trainer.stop()
        elif step < t.max_iters and self.should_stop():
            self._checkpoint()
            self.interrupted = True
            trainer.stop()

    def _log(self, row: dict[str, float]) -> None:
        self.latest.update(row)
        self.queue.add_metrics(self.job.id, row, latest=self.latest)

    @torch.no_grad()
    def _evaluate(self, step: int) -> None:
        """Mean loss over ``eval_iters`` fixed batches of each split, with dropout off."""
        t = self.train_spec
        self.model.eval()
        losses = {}
        for split in ("train", "val"):
            total = 0.0
            batches = self.client.batches(
                self.dataset_id,
                split,
                t.batch_size,
                t.block_size,
                t.seed,
                start_step=0,
                num_steps=t.eval_iters,
            )
            for x, y in batches:
                _, loss = self.model(x.to(self.trainer.device), y.to(self.trainer.device))
                total += loss.item()
            losses[split] = total / t.eval_iters
        self.model.train()
        self.curve["val"].append([step, losses["val"]])
        self._log({"step": step, "val/loss": losses["val"], "train/eval_loss": losses["train"]})

    @torch.no_grad()
    def _samples(self) -> list[dict[str, str]]:
        t = self.train_spec
        x, _ = next(self.client.batches(self.dataset_id, "val", N_SAMPLES, t.block_size, t.seed, 0, 1))
        prompts = x[:, :SAMPLE_PROMPT_TOKENS].to(self.trainer.device)
        self.model.eval()
        torch.manual_seed(t.seed)
        out = self.model.generate(prompts, SAMPLE_NEW_TOKENS, temperature=0.8, do_sample=True, top_k=20)
        samples = []
        for row in out.tolist():
            samples.append(
                {
                    "prompt": self.client.decode(self.dataset_id, row[:SAMPLE_PROMPT_TOKENS]),
                    "completion": self.client.decode(self.dataset_id, row[SAMPLE_PROMPT_TOKENS:]),
                }
            )
        return samples

    def _report(self, duration_s: float) -> dict[str, Any]:
        final = self.latest
        splits = {s.name: {"tokens": s.num_tokens, "examples": s.num_examples} for s in self.info.splits}
        report = {
            "job_id": self.job.id,
            "dataset": {
                "id": self.dataset_id,
                "module": self.info.module,
                "source": self.info.source,
                "tokenizer": self.info.tokenizer,
                "vocab_size": self.info.vocab_size,
                "splits": splits,
                "warnings": list(self.info.warnings),
            },
            "model": {**vars(self.model.config), "num_params": self.model.num_params()},
            "training": self.train_spec.model_dump(),
            "loss_at_init": {
                "val": self.curve["val"][0][1],
                "expected_ln_vocab": math.log(self.info.vocab_size),
            },
            "final": {"train_loss": final["train/eval_loss"], "val_loss": final["val/loss"]},
            "curve": self.curve,
            "samples": self._samples(),
            "duration_s": duration_s,
            "checkpoint": str(self.checkpoint_path),
        }
        write_report(self.job_dir / "report.json", report)
        return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
