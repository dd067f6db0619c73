"""Experiment tracking in MLflow: with ``SIMTRAIN_MLFLOW_URI`` set, every job is an MLflow run.

A run holds the job's spec flattened into params (``training.max_iters``, ``dataset.source``, ...), every
metrics row under the names the metrics API uses (``train/loss``, ``val/loss``, ``lr``, ...) at its step,
tags (the job id, its name and tags, where it was forked from), and once the job ends, its report.json and
report.png as artifacts. A job that runs again (a resumed attempt) goes on in the same run, found by its
``simtrain.job_id`` tag. Runs go into the MLflow experiment a job names (see :func:`experiment_of`), else
into ``simtrain``.

Tracking is a side channel: a failure to reach or write the store is one warning in the job's log, and
the job goes on untracked; it never fails the job. mlflow-skinny is the optional extra ``simtrain[mlflow]``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from simtrain.jobs import JobRecord, JobSpec
from simtrain.queue import LeaseLost
from trainer_service.outcome import JobCancelled, JobInterrupted

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "simtrain"
JOB_ID_TAG = "simtrain.job_id"
EXPERIMENT_TAG_PREFIX = "experiment:"  # a job tagged experiment:NAME goes into the experiment NAME
ARTIFACTS = ("report.json", "report.png")
_NOT_A_NAME = re.compile(r"[^\w.\- ]")  # what an MLflow param or tag key may not hold (MLflow allows a slash
# too, but a key must not read as another path)


def experiment_of(spec: JobSpec) -> str | None:
    """The experiment a job names with an ``experiment:NAME`` tag (None: the default experiment)."""
    for tag in spec.tags:
        if tag.startswith(EXPERIMENT_TAG_PREFIX) and len(tag) > len(EXPERIMENT_TAG_PREFIX):
            return tag.removeprefix(EXPERIMENT_TAG_PREFIX)
    return None


def flat_params(spec: JobSpec) -> dict[str, str]:
    """The spec as MLflow params: one per leaf, dotted keys, values as text (lists as JSON); unset ones
    left out."""

    def leaves(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield from leaves(f"{prefix}{_NOT_A_NAME.sub('_', str(key))}.", inner)
        elif value is not None:
            yield prefix[:-1][:250], value if isinstance(value, str) else json.dumps(value)

    return dict(leaves("", spec.model_dump(mode="json")))


def run_tags(job: JobRecord) -> dict[str, str]:
    """The run's tags: the job id, its tags (all of them, and each as ``simtrain.tag.<tag>``), lineage."""
    spec = job.spec
    tags = {JOB_ID_TAG: job.id, "simtrain.tags": ",".join(spec.tags)}
    tags |= {f"simtrain.tag.{_NOT_A_NAME.sub('_', tag)}"[:250]: "true" for tag in spec.tags}
    for field in ("forked_from", "init_from"):
        if getattr(spec, field) is not None:
            tags[f"simtrain.{field}"] = getattr(spec, field)
    return tags


def run_status(error: BaseException | None) -> str | None:
    """The MLflow status of a run that ended with ``error`` (None: succeeded); None: leave it as it is."""
    if error is None:
        return "FINISHED"
    if isinstance(error, JobCancelled):
        return "KILLED"
    if isinstance(error, JobInterrupted | redis.ConnectionError | redis.TimeoutError):
        return "SCHEDULED"  # back in the queue: the next attempt goes on in this run
    if isinstance(error, LeaseLost):
        return None  # a newer attempt owns the job, and the run
    return "FAILED"


class Tracking:
    """One job's MLflow run, or nothing (no URI, not rank 0, or tracking stopped after a failure)."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri
        self.client: Any = None  # an MlflowClient while tracking goes on
        self.run_id: str | None = None

    @classmethod
    def begin(cls, uri: str | None, job: JobRecord, experiment: str | None = None) -> Tracking:
        """Start (or, for a job that ran before, go on with) the job's run in ``experiment``."""
        tracking = cls(uri)
        if uri:
            tracking._guarded("start the job's run", lambda: tracking._start(job, experiment))
        return tracking

    def _start(self, job: JobRecord, experiment: str | None) -> None:
        try:
            from mlflow.entities import Param, RunStatus
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise RuntimeError("mlflow is not installed: pip install 'simtrain[mlflow]'") from None
        client = MlflowClient(tracking_uri=self.uri)
        experiment_id = _experiment_id(client, experiment or DEFAULT_EXPERIMENT)
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{JOB_ID_TAG}` = '{job.id}'", max_results=1
        )
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            log.info("tracking in MLflow run %s (experiment %s), as before", run_id, experiment_id)
        else:
            run = client.create_run(experiment_id, run_name=job.spec.name or job.id[:12], tags=run_tags(job))
            run_id = run.info.run_id
            params = [Param(key, value[:6000]) for key, value in flat_params(job.spec).items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params a call
                client.log_batch(run_id, params=params[start : start + 100])
            log.info("tracking in MLflow run %s (experiment %s)", run_id, experiment_id)
        self.client, self.run_id = client, run_id

    def set_tag(self, key: str, value: str) -> None:
        if self.client is not None:
            self._guarded("tag the run", lambda: self.client.set_tag(self.run_id, key, value))

    def log_metrics(self, row: dict[str, float]) -> None:
        """One metrics row, as the metrics API has it: every value but ``step``, at its step."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        step, now = int(row["step"]), int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for name, value in row.items() if name != "step"]
        self._guarded("log metrics", lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def end(self, error: BaseException | None, job_dir: Path) -> None:
        """The report and the loss plot as artifacts (where written), and the run's status."""
        status = run_status(error)
        if self.client is None or status is None:
            return

        def finish() -> None:
            for name in ARTIFACTS:
                if (job_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(job_dir / name))
            self.client.set_terminated(self.run_id, status=status)

        self._guarded("finish the run", finish)

    def _guarded(self, what: str, action: Callable[[], None]) -> None:
        """Run ``action``; on any failure, warn once in the job's log and track no more."""
        try:
            action()
        except Exception as e:
            reason = " ".join(str(e).split())[:500] or type(e).__name__
            log.warning(
                "experiment tracking stops for this job: could not %s in MLflow at %s: %s",
                what,
                self.uri,
                reason,
            )
            self.client = None


def _experiment_id(client: Any, name: str) -> str:
    """The id of the experiment ``name``, made if there is none (another trainer may make it meanwhile)."""
    from mlflow.exceptions import MlflowException

    held = client.get_experiment_by_name(name)
    if held is not None:
        return held.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        held = client.get_experiment_by_name(name)
        if held is None:
            raise
        return held.experiment_id
