"""The training loop's side of a job run: stream the train batches, and what happens after each step.

Every step feeds the fit monitor. At a sync step (every ``log_interval``, every ``eval_interval``, the last)
the ranks agree on the loss, the data wait and whether to stop; rank 0 logs a metrics row; at an
evaluation step every rank evaluates and checkpoints. Between sync steps a single process may stop at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from simtrain.jobs import JobRecord, TrainingSpec
from simtrain.queue import JobQueue
from trainer_service import metrics
from trainer_service.cancel_watch import CancelWatch
from trainer_service.data_client import DataClient
from trainer_service.device import pin
from trainer_service.model import GPT
from trainer_service.parallel import Ranks, gather_floats
from trainer_service.prefetch import Prefetcher
from trainer_service.report.monitor import FitMonitor
from trainer_service.tracking import Tracking
from trainer_service.trainer import Trainer

log = logging.getLogger(__name__)

PREFETCH_DEPTH = 4  # batches kept ready per rank


class RunLoop:
    """The loop half of :class:`trainer_service.job_runner.JobRun`."""

    job: JobRecord
    train_spec: TrainingSpec
    queue: JobQueue
    should_stop: Callable[[], bool]
    ranks: Ranks
    client: DataClient
    cancel_watch: CancelWatch | None
    tracking: Tracking
    dataset_id: str
    model: GPT
    trainer: Trainer
    monitor: FitMonitor
    device: torch.device
    curve: dict[str, list[list[float]]]
    latest: dict[str, float]
    interrupted: bool
    cancelled: bool
    unfit: str | None

    def _train(self) -> None:
        t, ranks = self.train_spec, self.ranks
        stream = self.client.batches(
            self.dataset_id,
            "train",
            t.batch_size,
            t.block_size,
            t.seed,
            start_step=self.trainer.iter_num,  # the data cursor: batches are a function of the step
            num_steps=t.max_iters - self.trainer.iter_num,
            rank=ranks.rank,
            world_size=ranks.world_size,
        )
        batches = Prefetcher(
            # Checked in the prefetch thread: ids against the vocabulary, alignment, masking, overlap.
            self.monitor.stream(stream, "train", first_step=self.trainer.iter_num),
            depth=PREFETCH_DEPTH,
            transform=pin if self.device.type == "cuda" else None,
        )
        self.trainer.batches = batches
        self.trainer.add_callback("on_batch_end", self._on_batch_end)
        if ranks.is_main:
            log.info(
                "training from step %d to %d on %s x%d: %s parameters",
                self.trainer.iter_num,
                t.max_iters,
                self.device.type,
                ranks.world_size,
                f"{self.model.num_params():,}",
            )
        self._start_window()
        try:
            self.trainer.run()
        finally:
            batches.close()

    def _start_window(self) -> None:
        self._window_start, self._window_steps, self._window_wait = time.perf_counter(), 0, 0.0

    def _on_batch_end(self, trainer: Trainer) -> None:
        t = self.train_spec
        step = trainer.iter_num + 1  # optimizer steps done, counting this one
        self._window_steps += 1
        self._window_wait += trainer.data_wait_s
        self.monitor.on_step(trainer.loss, trainer.grad_norm, step)
        is_eval = step % t.eval_interval == 0 or step == t.max_iters
        is_sync = is_eval or step % t.log_interval == 0
        if not is_sync:
            # One process checks its flags every step; ranks can only agree to stop at sync steps. (The last
            # step is always a sync step, so there is always a step left here.)
            if not self.ranks.distributed:
                if self._cancel_seen():
                    self._stop(interrupted=False)
                elif self.should_stop():
                    self._stop(interrupted=True)
            return

        elapsed = time.perf_counter() - self._window_start
        wait_frac = self._window_wait / max(elapsed, 1e-9)
        cancel = step < t.max_iters and self._cancel_seen()
        stop = step < t.max_iters and self.should_stop()
        nonfinite = self.monitor.nonfinite_steps()
        rows = gather_floats(
            self.ranks, [trainer.loss, wait_frac, float(cancel), float(stop), nonfinite], self.device
        )
        loss = sum(r[0] for r in rows) / len(rows)
        tokens = self._window_steps * t.batch_size * t.block_size * self.ranks.world_size
        self._train_s += elapsed
        self._train_tokens += tokens
        self._wait_s += self._window_wait
        row = {
            "step": step,
            "train/loss": loss,
            "lr": trainer.lr,
            "tokens_per_s": tokens / max(elapsed, 1e-9),
            # The slowest rank sets the pace: every step waits for it at the gradient all-reduce.
            "data_wait_frac": max(r[1] for r in rows),
        }
        mfu = self._mfu(row["tokens_per_s"])
        if mfu is not None:
            row["mfu"] = mfu
        if self.ranks.is_main:
            self._log_metrics(row)
        self.curve["train"].append([step, loss])

        if any(r[4] for r in rows):  # NaN weights now: nothing after this step means anything
            self.unfit = f"the loss or the gradient norm was not finite by step {step}"
            self.trainer.stop()
            return
        if is_eval:
            self._evaluate(step)
            self._checkpoint()
        if any(r[2] for r in rows):
            self._stop(interrupted=False, checkpointed=is_eval)
        elif any(r[3] for r in rows):
            self._stop(interrupted=True, checkpointed=is_eval)
        self._start_window()

    def _cancel_seen(self) -> bool:
        return self.cancel_watch is not None and self.cancel_watch.requested.is_set()

    def _stop(self, interrupted: bool, checkpointed: bool = False) -> None:
        if not checkpointed:
            self._checkpoint()
        self.interrupted, self.cancelled = interrupted, not interrupted
        self.trainer.stop()

    def _mfu(self, tokens_per_s: float) -> float | None:
        peak = metrics.peak_flops(
            metrics.device_name(self.device), metrics.precision_name(self.device, self.trainer.autocast_dtype)
        )
        per_device = tokens_per_s / self.ranks.world_size
        return metrics.mfu(per_device, self.model.flops_per_token(self.train_spec.block_size), peak)

    def _log_metrics(self, row: dict[str, float]) -> None:
        self.latest.update(row)
        self.queue.add_metrics(self.job.id, row, latest=self.latest)
        self.tracking.log_metrics(row)
