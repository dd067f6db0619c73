"""A job's checkpoints: what one holds, how every rank writes it at a sync step, and resuming from it.

A checkpoint is the whole state a job needs to go on exactly where it stopped: weights, optimizer, step,
every rank's RNG state, the data cursor (batches are a function of the step), the curves and the fit
monitor so far; and the dataset's tokenizer, where the data service offers it, so that the checkpoint
can be sampled with no service running. Another worker resumes a job from it after this one stopped or died.
A job forked with ``init_from`` and no checkpoint of its own starts from the weights of its source job's
checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from simtrain.jobs import JobRecord, JobSpec, TrainingSpec
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from trainer_service.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainer_service.model import GPT
from trainer_service.parallel import Ranks, all_gather, on_main
from trainer_service.probes import Probes
from trainer_service.report.monitor import FitMonitor
from trainer_service.trainer import Trainer

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
# What a model's weights must agree on to load into another (dropout rates may differ).
MODEL_SHAPE = ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")


class Checkpoints:
    """The checkpoint half of :class:`trainer_service.job_runner.JobRun`."""

    job: JobRecord
    spec: JobSpec
    train_spec: TrainingSpec
    settings: Settings
    queue: JobQueue
    ranks: Ranks
    checkpoint_path: Path
    dataset_id: str
    model: GPT
    trainer: Trainer
    monitor: FitMonitor
    device: torch.device
    curve: dict[str, list[list[float]]]
    latest: dict[str, float]
    tokenizer: dict[str, Any] | None
    retrieval: dict[str, str] | None
    probes: Probes | None

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
        if self.tokenizer is not None:  # so the checkpoint can be sampled alone (trainer_service.sampler)
            state["tokenizer"] = self.tokenizer
        if self.retrieval is not None:  # so an asker puts the prompt's retrieved context first, as rows do
            state["retrieval"] = self.retrieval
        if self.probes:
            state["probes"] = self.probes.state_dict()
        # Fenced: a worker whose job another attempt took over must not replace that attempt's checkpoint.
        fence = lambda: self.queue.assert_owner(self.job.id)  # noqa: E731
        save_checkpoint(self.checkpoint_path, state, before_replace=fence)
        log.info("checkpoint saved at step %d", trainer_state["iter_num"])
        self.trainer.trace.add_seconds("checkpoint", time.perf_counter() - started, calls=0)

    def _resume(self) -> None:
        """Continue from the checkpoint, if any: rank 0 reads it and hands it to the other ranks."""
        state = on_main(self.ranks, lambda: load_checkpoint(self.checkpoint_path))
        if state is None:
            if self.spec.init_from is not None:
                self._start_from(self.spec.init_from)
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
        if self.probes and "probes" in state:
            self.probes.load_state_dict(state["probes"])
        log.info("job %s resumes at step %d", self.job.id, self.trainer.iter_num)

    def _start_from(self, source_id: str) -> None:
        """A fork's first start: the weights of job ``source_id``'s latest checkpoint, and nothing else.

        The optimizer starts fresh and the step count at 0: the source's optimizer moments belong to its
        own learning rate, and the fork's ``max_iters`` counts the fork's steps, so "500 more steps at a
        lower rate" is a fork with max_iters 500. Its batches start at step 0 of its seed.
        """
        path = self.settings.jobs_dir / source_id / "checkpoint.pt"
        state = on_main(self.ranks, lambda: load_checkpoint(path))
        if state is None:
            raise CheckpointError(
                f"this job starts from job {source_id}'s checkpoint, and there is none (was the job deleted?)"
            )
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"job {source_id}'s checkpoint is not one this trainer can start from")
        differ = model_mismatches(state["model_config"], vars(self.model.config))
        if differ:
            raise CheckpointError(
                f"this job's model does not fit job {source_id}'s checkpoint, so it cannot start from it: "
                + "; ".join(differ)
            )
        self.model.load_state_dict(state["model"])
        trained_on = state["data"]["dataset_id"]
        if trained_on != self.dataset_id:
            log.warning(
                "job %s trained on dataset %s and this job trains on %s: its weights carry over only where "
                "the two share their tokenizer's vocabulary",
                source_id,
                trained_on,
                self.dataset_id,
            )
        log.info(
            "job %s starts from job %s's checkpoint (its step %d): its weights, a fresh optimizer, step 0",
            self.job.id,
            source_id,
            state["step"],
        )


def model_mismatches(saved: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Each size the saved weights cannot load into, as "<field>: <saved> in the checkpoint, <ours> here"."""
    return [
        f"{name}: {saved.get(name)} in the checkpoint, {ours[name]} here"
        for name in MODEL_SHAPE
        if saved.get(name) != ours[name]
    ]
