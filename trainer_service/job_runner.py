"""Run one job: prepare its data, train, evaluate, checkpoint, and write the first report.

The same code runs in a single process and on every rank of a torchrun job. Each rank streams its own
shard of every batch; rank 0 alone talks to the job record (metrics, status) and writes checkpoints and the
report. Ranks meet only at steps they all know in advance (logging, evaluation, the end), where they agree
on the loss, the data wait and whether to stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.jobs import JobRecord
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from trainer_service import metrics
from trainer_service.cancel_watch import CancelWatch
from trainer_service.checkpoint import load_checkpoint, save_checkpoint
from trainer_service.data_client import DataClient, DataRefused, DataServiceError
from trainer_service.device import autocast, pin
from trainer_service.model import GPT, GPTConfig
from trainer_service.outcome import JobCancelled, JobInterrupted
from trainer_service.parallel import Ranks, all_gather, gather_floats, on_main
from trainer_service.prefetch import Prefetcher
from trainer_service.report.accuracy import pairs_accuracy
from trainer_service.report.batch_checks import UnfitBatch
from trainer_service.report.build import RunShape, fit_sections, json_safe, refused_report
from trainer_service.report.monitor import FitMonitor
from trainer_service.report.plot import save_curves
from trainer_service.report.preflight import overfit_one_batch
from trainer_service.trainer import Trainer, TrainerConfig

log = logging.getLogger(__name__)

N_SAMPLES = 3
SAMPLE_PROMPT_TOKENS = 16
SAMPLE_NEW_TOKENS = 120
PREFETCH_DEPTH = 4  # batches kept ready per rank
CHECKPOINT_FORMAT = 2
# The most batches of each kind streamed at the end for the split-overlap measure, so a short run still
# has enough val and fresh-train probes, and enough of train hashed for fresh probes to be a baseline.
PROBE_BATCHES = 64
MORE_TRAIN_BATCHES = 256

__all__ = ["JobCancelled", "JobInterrupted", "JobRun"]


class JobRun:
    def __init__(
        self,
        job: JobRecord,
        settings: Settings,
        queue: JobQueue,
        should_stop: Callable[[], bool],
        ranks: Ranks | None = None,
    ):
        self.job = job
        self.spec = job.spec
        self.train_spec = job.spec.training
        self.settings = settings
        self.queue = queue
        self.should_stop = should_stop
        self.ranks = ranks or Ranks()
        self.job_dir = settings.jobs_dir / job.id
        self.checkpoint_path = self.job_dir / "checkpoint.pt"
        self.client = DataClient(
            job.spec.data_service or settings.data_service_addr,
            retries=settings.data_service_retries,
            backoff_s=settings.data_service_backoff_s,
            max_message_bytes=settings.grpc_max_message_bytes,
        )
        self.curve: dict[str, list[list[float]]] = {"train": [], "val": [], "train_eval": []}
        self.latest: dict[str, float] = {}
        self.interrupted = False
        self.cancelled = False
        self.unfit: str | None = None  # why training stopped because the data cannot be trained on
        self.refused: str | None = None  # the data service's refusal to serve a stream the job needs
        self._train_s, self._train_tokens, self._wait_s = 0.0, 0, 0.0

    def run(self) -> dict[str, Any] | None:
        """Train to the end and return the report (rank 0; other ranks return None).

        Raises JobCancelled or JobInterrupted after checkpointing when asked to stop early.
        """
        # Only rank 0 reads the flag; the ranks agree on stopping at sync steps.
        self.cancel_watch = CancelWatch(self.queue, self.job.id) if self.ranks.is_main else None
        try:
            return self._run()
        finally:
            if self.cancel_watch:
                self.cancel_watch.close()
            self.client.close()

    # -- setup ----------------------------------------------------------------------------------

    def _run(self) -> dict[str, Any] | None:
        t, ranks = self.train_spec, self.ranks
        started = time.time()
        try:
            raw = on_main(ranks, lambda: self.client.prepare(self.spec.dataset).SerializeToString())
        except DataRefused as e:  # rank 0: the data cannot even be prepared; the report says why
            self._refused_before_training(e)
        prepare_s = time.time() - started  # the data service tokenizes the source while preparing
        self.info = pb.DatasetInfo.FromString(raw)
        self.dataset_id = self.info.dataset_id
        if ranks.is_main:
            self.queue.update(self.job.id, dataset_id=self.dataset_id)

        torch.manual_seed(t.seed)  # the same initial weights on every rank
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
            model_type=self.spec.model.model_type,
        )
        self.model = GPT(config)
        if ranks.distributed:
            torch.manual_seed(t.seed + ranks.rank)  # but each rank its own dropout masks
        self.trainer = Trainer(self._trainer_config(), self.model, iter(()))
        self.trainer.trace.add_seconds("encode", prepare_s)
        pairs = self.info.packing == "pairs"
        self.monitor = FitMonitor(self.info.vocab_size, pairs, t.block_size, self.spec.checks)
        self.device = self.trainer.device
        self._resume()
        if ranks.is_main:  # rows an earlier attempt logged after its checkpoint are logged again below
            self.queue.rewind_metrics(self.job.id, self.trainer.iter_num or -1, self.latest)
        try:
            if self.trainer.iter_num == 0:
                self._evaluate(step=0)
            self._preflight()
            self._train()
        except (UnfitBatch, DataRefused) as e:
            if ranks.distributed:  # the other ranks are mid-collective: end the job with this rank's message
                raise
            if isinstance(e, DataRefused):
                self.refused = f"the data service cannot serve this job: {e.detail}"
            self.unfit = self.refused or str(e)
        if self.cancelled:
            raise JobCancelled(f"cancelled at step {self.trainer.iter_num}; checkpoint saved")
        if self.interrupted:
            raise JobInterrupted(f"stopped at step {self.trainer.iter_num}; checkpoint saved")
        if not ranks.is_main:
            return None
        report = self._report(duration_s=time.time() - started)
        if self.unfit:
            self.queue.set_report(self.job.id, report)  # the job fails, and its report says why
            raise UnfitBatch(f"not fit, training stopped: {self.unfit} (the report says more)")
        return report

    def _refused_before_training(self, e: DataRefused) -> NoReturn:
        """End a job whose dataset the data service will not prepare: a report that says not fit, and why."""
        reason = f"the data service cannot prepare the dataset: {e.detail}"
        report = refused_report(self.job.id, self.spec.dataset.model_dump(exclude_none=True), reason)
        write_report(self.job_dir / "report.json", report)
        self.queue.set_report(self.job.id, report)
        raise DataServiceError(f"not fit, nothing was trained: {reason} (the report says more)") from None

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
        self._start_window()
        try:
            self.trainer.run()
        finally:
            batches.close()

    def _preflight(self) -> None:
        """One batch overfits? A copy of the model trains on a few rows of the first train batch (rank 0).

        Recorded in the checkpoint, so a resumed job does not run it again.
        """
        checks, t = self.spec.checks, self.train_spec
        if self.monitor.preflight is not None or checks.overfit_steps == 0 or not self.ranks.is_main:
            return
        stream = self.client.batches(self.dataset_id, "train", t.batch_size, t.block_size, t.seed, 0, 1)
        [(x, y)] = list(self.monitor.stream(stream, "pre-flight"))
        with self.trainer.trace.span("preflight"):
            self.monitor.preflight = overfit_one_batch(
                self.model,
                x[: checks.overfit_rows],
                y[: checks.overfit_rows],
                steps=checks.overfit_steps,
                lr=checks.overfit_lr,
                ratio=checks.overfit_ratio,
                autocast_dtype=self.trainer.autocast_dtype,
            )

    def _trainer_config(self) -> TrainerConfig:
        t = self.train_spec
        if t.gpus > 0:
            device = f"cuda:{self.ranks.local_rank}" if self.ranks.distributed else "cuda"
        elif t.nproc > 1:
            device = "cpu"  # nproc is the CPU (gloo) knob
        else:
            device = t.device if t.device != "auto" else self.settings.device
        return TrainerConfig(
            device=device,
            max_iters=t.max_iters,
            batch_size=t.batch_size,
            learning_rate=t.learning_rate,
            betas=t.betas,
            weight_decay=t.weight_decay,
            grad_norm_clip=t.grad_norm_clip,
            lr_schedule=t.lr_schedule,
            warmup_iters=t.warmup_iters,
            precision=t.precision,
            compile=t.compile,
        )

    # -- checkpoints ------------------------------------------------------------------------------

    def _data_cursor(self, next_step: int) -> dict[str, Any]:
        t = self.train_spec
        return {
            "dataset_id": self.dataset_id,
            "split": "train",
            "seed": t.seed,
            "batch_size": t.batch_size,
            "block_size": t.block_size,
            "world_size": self.ranks.world_size,
            "next_step": next_step,
        }

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _checkpoint(self) -> None:
        """Model, optimizer, step, every rank's RNG state, the data cursor, and the curves so far.

        Collective: every rank calls it at the same step; rank 0 writes. The model is the plain GPT (never
        a DDP or compiled wrapper), so the saved state_dict is exactly minGPT's.
        """
        started = time.perf_counter()
        self.trainer.trace.add_seconds("checkpoint", 0.0)  # counted first: the saved trace includes this call
        rngs = all_gather(self.ranks, self._rng_state())
        if not self.ranks.is_main:
            return
        trainer_state = self.trainer.state_dict()
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "model_config": vars(self.model.config),
            "optimizer": trainer_state["optimizer"],
            "step": trainer_state["iter_num"],
            "rng": rngs,
            "data": self._data_cursor(trainer_state["iter_num"]),
            "curve": self.curve,
            "latest": self.latest,
            "trace": self.trainer.trace.state_dict(),
            "fit": self.monitor.state_dict(),
        }
        # Fenced: a worker whose job another attempt took over must not replace that attempt's checkpoint.
        fence = lambda: self.queue.assert_owner(self.job.id)  # noqa: E731
        save_checkpoint(self.checkpoint_path, state, before_replace=fence)
        self.trainer.trace.add_seconds("checkpoint", time.perf_counter() - started, calls=0)

    def _resume(self) -> None:
        """Continue from the checkpoint, if any: rank 0 reads it and hands it to the other ranks."""
        state = on_main(self.ranks, lambda: load_checkpoint(self.checkpoint_path))
        if state is None:
            return
        if state.get("format") != CHECKPOINT_FORMAT:
            raise RuntimeError(f"{self.checkpoint_path} is not a checkpoint this trainer can resume from")
        cursor = state["data"]
        if cursor["dataset_id"] != self.dataset_id:
            raise RuntimeError(
                f"the checkpoint was trained on dataset {cursor['dataset_id']}, but the job now prepares "
                f"{self.dataset_id} (its source changed); resuming would mix the two"
            )
        if cursor["world_size"] != self.ranks.world_size or len(state["rng"]) != self.ranks.world_size:
            raise RuntimeError(
                f"the checkpoint was written by {cursor['world_size']} processes, this run has "
                f"{self.ranks.world_size}"
            )
        self.model.load_state_dict(state["model"])
        rng = state["rng"][self.ranks.rank]
        self.trainer.load_state_dict(
            {
                "iter_num": cursor["next_step"],
                "optimizer": state["optimizer"],
                "rng_state": rng["cpu"],
                **({"cuda_rng_state": rng["cuda"]} if "cuda" in rng else {}),
            }
        )
        self.curve = state["curve"]
        self.curve.setdefault("train_eval", [])
        self.latest = state["latest"]
        if "trace" in state:  # the job's trace so far, plus this attempt's preparation
            self.trainer.trace.load_state_dict(state["trace"], keep=("encode",))
        if "fit" in state:
            self.monitor.load_state_dict(state["fit"])
        log.info("job %s resumes at step %d", self.job.id, self.trainer.iter_num)

    # -- the loop's callback ----------------------------------------------------------------------

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
            self._log(row)
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

    def _log(self, row: dict[str, float]) -> None:
        self.latest.update(row)
        self.queue.add_metrics(self.job.id, row, latest=self.latest)

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
            self._log({"step": step, "val/loss": val_loss, "train/eval_loss": train_loss})

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

    # -- the report (rank 0) ------------------------------------------------------------------------

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

    def _speed(self) -> dict[str, Any]:
        """Throughput over this run's training steps (evaluation excluded), and what it ran on."""
        tokens_per_s = self._train_tokens / self._train_s if self._train_s > 0 else None
        precision = metrics.precision_name(self.device, self.trainer.autocast_dtype)
        name = metrics.device_name(self.device)
        return {
            "device": name,
            "world_size": self.ranks.world_size,
            "precision": precision,
            "compile": self.train_spec.compile,
            "tokens_per_s": tokens_per_s,
            "mfu": self._mfu(tokens_per_s) if tokens_per_s else None,
            "peak_flops_per_device": metrics.peak_flops(name, precision),
            "flops_per_token": self.model.flops_per_token(self.train_spec.block_size),
            "data_wait_frac": self.latest.get("data_wait_frac"),
        }

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

    def _fit(self, final: dict[str, Any], accuracy: dict[str, Any] | None) -> dict[str, Any]:
        """The report's checks and verdict, from everything the run measured."""
        t = self.train_spec
        if not self.unfit:
            self._probe_overlap()
        try:
            stats = json.loads(self.info.stats_json or "{}")
        except ValueError:
            stats = {}  # another data service's statistics we cannot read: those checks are skipped
        shape = RunShape(
            vocab_size=self.info.vocab_size,
            tokenizer=self.info.tokenizer,
            pairs=self.info.packing == "pairs",
            block_size=t.block_size,
            max_iters=t.max_iters,
            eval_interval=t.eval_interval,
            steps_done=self.trainer.iter_num,
            evaluated_at_init=any(s == 0 for s, _ in self.curve["val"]),
            stopped_early=self.unfit,
            refused=self.refused,
        )
        return fit_sections(
            stats=stats if isinstance(stats, dict) else {},
            monitor=self.monitor,
            spec=self.spec.checks,
            shape=shape,
            curve=self.curve,
            final=final,
            data_wait_share=self._wait_s / self._train_s if self._train_s > 0 else None,
            trace=self.trainer.trace.summary(),
            accuracy=accuracy,
            decode=self._decode_or_none,
        )

    def _probe_overlap(self) -> None:
        """Probes for the split-overlap ratio: more val batches, fresh train batches (another seed) as its
        baseline, and more of train hashed as seen while fresh probes rarely hit it (a short run)."""
        t, overlap = self.train_spec, self.monitor.overlap
        fresh_seed = (t.seed + 1) % 2**63
        kinds = [
            ("val", "val", t.seed, t.eval_iters, PROBE_BATCHES, lambda: overlap.enough_probes("val")),
            ("fresh", "train", fresh_seed, 0, PROBE_BATCHES, lambda: overlap.enough_probes("fresh")),
            ("more train", "train", t.seed, t.max_iters, MORE_TRAIN_BATCHES, overlap.enough_seen),
        ]
        for role, split, seed, start, most, enough in kinds:
            if enough():
                continue
            stream = self.client.batches(
                self.dataset_id, split, t.batch_size, t.block_size, seed, start, most
            )
            with contextlib.closing(self.monitor.stream(stream, role)) as batches:
                for i, _ in enumerate(batches, start=1):
                    if i % 8 == 0 and enough():
                        break

    def _decode_or_none(self, ids: list[int]) -> str | None:
        """Token ids as text for the report's reasons; None when the data service cannot decode them."""
        try:
            return self.client.decode(self.dataset_id, ids)
        except DataServiceError:
            return None

    def _plot(self, report: dict[str, Any]) -> str | None:
        """The loss curves as report.png beside report.json; a plotting failure costs the PNG, not the job."""
        try:
            title = f"job {self.job.id[:12]}: {report['verdict']}"
            ln_vocab = report["loss_at_init"]["expected_ln_vocab"]
            return str(save_curves(self.job_dir / "report.png", report["curve"], ln_vocab, title))
        except Exception:
            log.exception("job %s: could not draw the loss curves", self.job.id)
            return None

    def _report(self, duration_s: float) -> dict[str, Any]:
        final = self.latest
        accuracy = self._accuracy()
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
                "val": self.curve["val"][0][1] if self.curve["val"] else None,
                "expected_ln_vocab": math.log(self.info.vocab_size),
            },
            "final": {"train_loss": final.get("train/eval_loss"), "val_loss": final.get("val/loss")},
            "curve": self.curve,
            "speed": self._speed(),
            "samples": self._samples(accuracy),
            "duration_s": duration_s,
            "checkpoint": str(self.checkpoint_path),
        }
        report = json_safe({**report, **self._fit(report["final"], accuracy)})
        report["plot"] = self._plot(report)
        self.queue.assert_owner(self.job.id)
        write_report(self.job_dir / "report.json", report)
        return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
