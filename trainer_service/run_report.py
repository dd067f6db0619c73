"""The report of a job run (rank 0): what the run measured, the fit checks and verdict, written as
``report.json`` (and the loss curves as ``report.png``) in the job's folder, and stored on the job."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any, NoReturn

import torch

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.jobs import JobRecord, JobSpec, TrainingSpec
from simtrain.queue import JobQueue
from trainer_service import metrics
from trainer_service.data_client import DataClient, DataRefused, DataServiceError, dataset_stats
from trainer_service.model import GPT
from trainer_service.parallel import Ranks
from trainer_service.probes import Probes
from trainer_service.report.build import RunShape, fit_sections, json_safe, refused_report
from trainer_service.report.monitor import FitMonitor
from trainer_service.report.plot import save_curves
from trainer_service.trainer import Trainer

log = logging.getLogger(__name__)

# The most batches of each kind streamed at the end for the split-overlap measure, so a short run still
# has enough val and fresh-train probes, and enough of train hashed for fresh probes to be a baseline.
PROBE_BATCHES = 64
MORE_TRAIN_BATCHES = 256


class RunReport:
    """The report half of :class:`trainer_service.job_runner.JobRun`."""

    job: JobRecord
    spec: JobSpec
    train_spec: TrainingSpec
    queue: JobQueue
    ranks: Ranks
    client: DataClient
    job_dir: Path
    checkpoint_path: Path
    info: pb.DatasetInfo
    dataset_id: str
    model: GPT
    trainer: Trainer
    monitor: FitMonitor
    device: torch.device
    curve: dict[str, list[list[float]]]
    latest: dict[str, float]
    unfit: str | None
    refused: str | None
    probes: Probes | None
    _train_s: float
    _train_tokens: int
    _wait_s: float

    def _refused_before_training(self, e: DataRefused) -> NoReturn:
        """End a job whose dataset the data service will not prepare: a report that says not fit, and why."""
        reason = f"the data service cannot prepare the dataset: {e.detail}"
        report = refused_report(self.job.id, self.spec.dataset.model_dump(exclude_none=True), reason)
        write_report(self.job_dir / "report.json", report)
        self.queue.set_report(self.job.id, report)
        raise DataServiceError(f"not fit, nothing was trained: {reason} (the report says more)") from None

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

    def _fit(self, final: dict[str, Any], accuracy: dict[str, Any] | None) -> dict[str, Any]:
        """The report's checks and verdict, from everything the run measured."""
        t = self.train_spec
        if not self.unfit:
            self._probe_overlap()
        stats = dataset_stats(self.info)
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
            init_from=self.spec.init_from,
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
            "init_from": self.spec.init_from,
        }
        if self.probes:
            report["probes"] = self.probes.report()
        report = json_safe({**report, **self._fit(report["final"], accuracy)})
        report["plot"] = self._plot(report)
        self.queue.assert_owner(self.job.id)
        write_report(self.job_dir / "report.json", report)
        log.info("verdict: %s: %s", report["verdict"], report["summary"])
        return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
