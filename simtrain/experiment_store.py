"""Experiment records in Redis, beside the jobs they submitted.

Keys (under the configured prefix):
  ``experiment:<id>``        a hash: ``id``, ``name``, ``spec`` (the ExperimentSpec, JSON), ``created_at``,
                             ``cancel_requested`` ("1" once asked)
  ``experiment:<id>:runs``   a list of JSON ``{"variant", "seed", "job_id"}``, one per job submitted
  ``experiments:index``      a sorted set of experiment ids scored by creation time

The runs are ordinary jobs (queued, fenced, resumed like any); the experiment only remembers which they
are. Each run is recorded as soon as its job is queued, so a gateway that dies mid-submit leaves an
experiment naming every job it did queue.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from simtrain.compare import RunResult
from simtrain.experiments import (
    ExperimentRun,
    ExperimentSpec,
    ExperimentView,
    PlannedRun,
    experiment_status,
)
from simtrain.jobs import JobStatus, JobView
from simtrain.queue import JobQueue, decode_view, job_key


class ExperimentStore:
    def __init__(self, queue: JobQueue):
        self.queue = queue
        self.r = queue.r
        self.index = f"{queue.prefix}experiments:index"

    def _key(self, experiment_id: str) -> str:
        return f"{self.queue.prefix}experiment:{experiment_id}"

    def create(self, spec: ExperimentSpec, runs: list[PlannedRun]) -> str:
        """Store the experiment, then queue each run as a job and record it; return the experiment id."""
        experiment_id = uuid.uuid4().hex
        key, now = self._key(experiment_id), time.time()
        pipe = self.r.pipeline()
        pipe.hset(
            key,
            mapping={
                "id": experiment_id,
                "name": spec.name,
                "spec": spec.model_dump_json(),
                "created_at": now,
            },
        )
        pipe.zadd(self.index, {experiment_id: now})
        pipe.execute()
        for run in runs:
            job = self.queue.submit(run.spec)
            self.r.rpush(
                f"{key}:runs", json.dumps({"variant": run.variant, "seed": run.seed, "job_id": job.id})
            )
        return experiment_id

    def run_ids(self, experiment_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.r.lrange(f"{self._key(experiment_id)}:runs", 0, -1)]

    def jobs(self, experiment_id: str) -> list[tuple[dict[str, Any], JobView | None]]:
        """Each run's ``{"variant", "seed", "job_id"}`` with its job's record (None: deleted)."""
        runs = self.run_ids(experiment_id)
        pipe = self.r.pipeline(transaction=False)
        for run in runs:
            pipe.hgetall(job_key(self.queue.prefix, run["job_id"]))
        views = [
            decode_view(run["job_id"], f) if f else None for run, f in zip(runs, pipe.execute(), strict=True)
        ]
        return list(zip(runs, views, strict=True))

    def get(self, experiment_id: str) -> ExperimentView | None:
        fields = self.r.hgetall(self._key(experiment_id))
        if not fields:
            return None
        runs = [
            ExperimentRun(
                variant=run["variant"],
                seed=run["seed"],
                job_id=run["job_id"],
                status=view.status if view else None,
                verdict=view.verdict if view else None,
                error=view.error if view else "the job was deleted",
                step=view.progress.step if view else 0,
                max_iters=view.progress.max_iters if view else 0,
            )
            for run, view in self.jobs(experiment_id)
        ]
        return ExperimentView(
            id=experiment_id,
            name=fields["name"],
            status=experiment_status([r.status for r in runs]),
            cancel_requested=fields.get("cancel_requested") == "1",
            spec=ExperimentSpec.model_validate_json(fields["spec"]),
            runs=runs,
            created_at=float(fields["created_at"]),
        )

    def list(
        self, limit: int = 50, tags: Sequence[str] = (), name: str | None = None
    ) -> list[ExperimentView]:
        """Experiments newest first: those with every one of ``tags`` and whose name contains ``name`` (any
        case), where given."""
        found: list[ExperimentView] = []
        for experiment_id in self.r.zrevrange(self.index, 0, -1):
            view = self.get(experiment_id)
            if view is None or not set(tags) <= set(view.spec.tags):
                continue
            if name is None or name.casefold() in view.name.casefold():
                found.append(view)
                if len(found) == limit:
                    break
        return found

    def cancel(self, experiment_id: str) -> ExperimentView | None:
        """Cancel every run through the queue: queued ones at once, running ones at their next step."""
        if not self.r.exists(self._key(experiment_id)):
            return None
        self.r.hset(self._key(experiment_id), "cancel_requested", "1")
        for run in self.run_ids(experiment_id):
            self.queue.request_cancel(run["job_id"])
        return self.get(experiment_id)

    def unfinished(self, experiment_id: str) -> list[tuple[str, JobStatus]]:
        """(job id, status) of each run that has not finished."""
        return [(r["job_id"], v.status) for r, v in self.jobs(experiment_id) if v and not v.status.finished]

    def delete(self, experiment_id: str) -> list[str]:
        """Delete the experiment and its runs' jobs (all finished: see :meth:`unfinished`); return the job ids
        deleted."""
        deleted = []
        for run in self.run_ids(experiment_id):
            status = self.queue.delete(run["job_id"])
            if status is not None and status.finished:
                deleted.append(run["job_id"])
        key = self._key(experiment_id)
        pipe = self.r.pipeline()
        pipe.delete(key, f"{key}:runs")
        pipe.zrem(self.index, experiment_id)
        pipe.execute()
        return deleted


def run_results(queue: JobQueue, runs: list[tuple[str, int, str]]) -> list[RunResult]:
    """What :func:`simtrain.compare.compare` needs of each (variant, seed, job id): the job's record, its
    report, and its val-loss curve (the report's, else the logged metrics')."""
    results = []
    for variant, seed, job_id in runs:
        fields = queue.r.hgetall(job_key(queue.prefix, job_id))
        view = decode_view(job_id, fields) if fields else None
        report = queue.report(job_id) if view else None
        curve = ((report or {}).get("curve") or {}).get("val")
        if curve is None and view is not None:
            curve = [[row["step"], row["val/loss"]] for row in queue.metrics(job_id) if "val/loss" in row]
        results.append(
            RunResult(
                variant=variant,
                seed=seed,
                job_id=job_id,
                status=view.status.value if view else None,
                error=view.error if view else None,
                spec=view.spec.model_dump(mode="json") if view and view.spec else None,
                report=report,
                val_curve=[(int(s), float(v)) for s, v in curve or [] if v is not None],
            )
        )
    return results
