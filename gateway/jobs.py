"""The ``/v1/jobs`` endpoints: submit a job, then read its record, metrics and report."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from gateway.errors import ApiError
from simtrain.jobs import JobRecord, JobSpec, JobStatus
from simtrain.queue import JobQueue

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# Job ids are uuid4 hex; allow some slack for other clients, but never junk as a Redis key.
_JOB_ID = re.compile(r"[0-9a-f]{1,64}")

_NOT_FOUND = {404: {"description": "No such job (or not a job id)"}}


class Accepted(BaseModel):
    id: str
    status: JobStatus


class JobMetrics(BaseModel):
    job_id: str
    metrics: list[dict[str, float]]


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def _job_id(job_id: str) -> str:
    """Turn a path id that cannot name a job into a 404 before it reaches Redis."""
    if not _JOB_ID.fullmatch(job_id):
        raise ApiError(404, "not_found", "not a job id: job ids are 1 to 64 lowercase hex digits")
    return job_id


Queue = Annotated[JobQueue, Depends(_queue)]
JobId = Annotated[str, Depends(_job_id)]


def _record(queue: JobQueue, job_id: str) -> JobRecord:
    record = queue.get(job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job with id {job_id}")
    return record


@router.post("", status_code=202, summary="Submit a training job")
def submit_job(spec: JobSpec, queue: Queue, response: Response) -> Accepted:
    job = queue.submit(spec)
    response.headers["Location"] = f"{router.prefix}/{job.id}"
    return Accepted(id=job.id, status=job.status)


@router.get("/{job_id}", responses=_NOT_FOUND, summary="A job's status, progress and latest metrics")
def get_job(job_id: JobId, queue: Queue) -> JobRecord:
    return _record(queue, job_id)


@router.get("/{job_id}/metrics", responses=_NOT_FOUND, summary="A job's logged metrics, in step order")
def get_metrics(job_id: JobId, queue: Queue, since_step: Annotated[int, Query(ge=0)] = 0) -> JobMetrics:
    _record(queue, job_id)
    return JobMetrics(job_id=job_id, metrics=queue.metrics(job_id, since_step))


@router.get("/{job_id}/report", responses=_NOT_FOUND, summary="The fit report the trainer wrote")
def get_report(job_id: JobId, queue: Queue) -> dict[str, Any]:
    record = _record(queue, job_id)
    report = queue.report(job_id)
    if report is None:
        details = [{"job_id": job_id, "status": record.status.value}]
        raise ApiError(404, "report_not_ready", f"no report yet, job is {record.status.value}", details)
    return report
