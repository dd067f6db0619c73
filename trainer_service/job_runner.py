"""Run one job: prepare its data, train, evaluate, checkpoint, and write the first report.

The same code runs in a single process and on every rank of a torchrun job. Each rank streams its own
shard of every batch; rank 0 alone talks to the job record (metrics, status) and writes checkpoints and the
report. Ranks meet only at steps they all know in advance (logging, evaluation, the end), where they agree
on the loss, the data wait and whether to stop.

:class:`JobRun` sets the run up and drives it; its parts live beside it: the loop (``run_loop``),
checkpoints and resuming (``resume``), evaluation and samples (``evaluation``), the report (``run_report``);
MLflow tracking, when configured, beside them (``tracking``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from data_service import tokenizers
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.jobs import JobRecord
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from trainer_service.cancel_watch import CancelWatch
from trainer_service.data_client import DataClient, DataRefused, DataServiceError, dataset_stats
from trainer_service.evaluation import Evaluation
from trainer_service.model import GPT, GPTConfig
from trainer_service.outcome import JobCancelled, JobInterrupted
from trainer_service.parallel import Ranks, on_main
from trainer_service.probes import Codec, Context, Probes
from trainer_service.report.batch_checks import UnfitBatch
from trainer_service.report.chat_turns import single_tokens
from trainer_service.report.monitor import FitMonitor
from trainer_service.report.preflight import overfit_one_batch
from trainer_service.resume import Checkpoints
from trainer_service.run_loop import RunLoop
from trainer_service.run_report import RunReport
from trainer_service.tracking import Tracking, experiment_of
from trainer_service.trainer import Trainer, TrainerConfig

log = logging.getLogger(__name__)

__all__ = ["JobCancelled", "JobInterrupted", "JobRun"]


class JobRun(RunLoop, Checkpoints, Evaluation, RunReport):
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
        self.client = DataClient.configured(job.spec.data_service or settings.data_service_addr, settings)
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
        # Only rank 0 reads the flag; the ranks agree on stopping at sync steps. Rank 0 alone tracks.
        self.cancel_watch = CancelWatch(self.queue, self.job.id) if self.ranks.is_main else None
        uri = self.settings.mlflow_uri if self.ranks.is_main else None
        self.tracking = Tracking.begin(uri, self.job, experiment_of(self.spec))
        ended: BaseException | None = None
        try:
            return self._run()
        except BaseException as e:
            ended = e
            raise
        finally:
            self.tracking.end(ended, self.job_dir)
            if self.cancel_watch:
                self.cancel_watch.close()
            self.client.close()

    def _run(self) -> dict[str, Any] | None:
        t, ranks = self.train_spec, self.ranks
        started = time.time()
        d = self.spec.dataset
        log.info(
            "preparing the data: %s", f"dataset {d.id}" if d.id else f"module {d.module}, source {d.source}"
        )
        try:
            raw = on_main(ranks, lambda: self.client.prepare(self.spec.dataset).SerializeToString())
        except DataRefused as e:  # rank 0: the data cannot even be prepared; the report says why
            self._refused_before_training(e)
        prepare_s = time.time() - started  # the data service tokenizes the source while preparing
        self.info = pb.DatasetInfo.FromString(raw)
        self.dataset_id = self.info.dataset_id
        self.tokenizer = None
        if ranks.is_main:
            self.queue.update(self.job.id, dataset_id=self.dataset_id)
            self.tracking.set_tag("simtrain.dataset_id", self.dataset_id)
            self._log_dataset()
            self.tokenizer = self._saved_tokenizer()
        codec = self._codec() if ranks.is_main else None
        self.retrieval = self._retrieval()
        self.probes = self._probes(codec) if codec and self.spec.probes else None

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
        markers = single_tokens(codec.encode) if codec else None
        self.monitor = FitMonitor(self.info.vocab_size, pairs, t.block_size, self.spec.checks, markers)
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

    def _saved_tokenizer(self) -> dict[str, Any] | None:
        """The tokenizer checkpoints carry; a job goes on without one (then only the service decodes)."""
        try:
            saved = self.client.tokenizer(self.dataset_id)
        except DataServiceError as e:
            log.warning("checkpoints will carry no tokenizer: %s", e)
            return None
        if saved is None:
            log.info("the data service does not offer GetTokenizer: checkpoints will carry no tokenizer")
        return saved

    def _retrieval(self) -> dict[str, str] | None:
        """Where the context of a retrieval dataset's rows is found, for prompts of one's own (the probes,
        and the checkpoint's askers); None for other datasets."""
        if "retrieval" not in dataset_stats(self.info):
            return None
        return {"data_service": self.client.address, "dataset_id": self.dataset_id}

    def _probes(self, codec: Codec) -> Probes:
        """The spec's probes; on a retrieval dataset each asked after its prompt's context, as rows are."""
        if self.retrieval is None:
            return Probes(self.spec.probes, codec)
        prompts = [p.prompt for p in self.spec.probes]
        try:
            found = self.client.retrieve(self.dataset_id, prompts)
        except DataServiceError as e:
            found, why = None, f"the data service could not retrieve their context ({e})"
        else:
            why = "the data service does not offer Retrieve"
        if found is None:
            note = f"asked without the retrieved context the dataset's rows have: {why}"
            log.warning("probes are %s", note)
            return Probes(self.spec.probes, codec, note=note)
        contexts = [Context(list(c.tokens), c.text) for c in found]
        return Probes(self.spec.probes, codec, contexts)

    def _codec(self) -> Codec:
        """How probes encode and decode: with the tokenizer itself where the data service gave it (so the
        end token is known), else through the data service's Encode and Decode."""
        if self.tokenizer is not None:
            try:
                tok = tokenizers.load(self.tokenizer)
            except Exception as e:  # a definition we cannot read: the data service's RPCs still can
                log.warning("probes go through the data service: its tokenizer cannot be rebuilt (%s)", e)
            else:
                ends = frozenset(range(tok.base_vocab_size, tok.vocab_size))
                return Codec(lambda text: tok.encode(text).tolist(), tok.decode, ends)
        return Codec(
            lambda text: self.client.encode(self.dataset_id, text),
            lambda ids: self.client.decode(self.dataset_id, ids),
        )

    def _log_dataset(self) -> None:
        splits = ", ".join(f"{s.name} {s.num_tokens:,} tokens" for s in self.info.splits)
        log.info(
            "dataset %s: %s; vocabulary of %d (%s tokenizer)",
            self.dataset_id,
            splits,
            self.info.vocab_size,
            self.info.tokenizer,
        )
        for warning in self.info.warnings:
            log.warning("dataset %s: %s", self.dataset_id, warning)

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
