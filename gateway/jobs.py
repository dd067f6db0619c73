"""The `/v1/jobs` endpoints: submit, list, read, cancel, delete; metrics, logs, events, report, checkpoint."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway import examples
from gateway.datasets import dataset_problems
from gateway.errors import ApiError, error_doc
from gateway.lineage import init_from_problems
from simtrain.jobs import MAX_TAGS, JobSpec, JobStatus, JobView, check_tag
from simtrain.limits import limit_errors
from simtrain.model_presets import MODEL_PRESETS
from simtrain.queue import LOG_LINES, IdempotencyConflict, JobQueue, decode_view, job_key

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
models_router = APIRouter(prefix="/v1/models", tags=["jobs"])

# Job ids are uuid4 hex; allow some slack for other clients, but never junk as a Redis key or a path.
JOB_ID = re.compile(r"[0-9a-f]{1,64}")

_NOT_FOUND = {404: error_doc("No such job (or not a job id)")}


class Accepted(BaseModel):
    id: str
    status: JobStatus

    model_config = {"json_schema_extra": {"example": {"id": examples.JOB_ID, "status": "queued"}}}


class JobPage(BaseModel):
    jobs: list[JobView] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")

    model_config = {"json_schema_extra": {"example": examples.JOB_PAGE}}


class CancelResult(BaseModel):
    id: str
    status: JobStatus = Field(description="`cancelled` at once for a queued job; a running one stays running")
    cancel_requested: bool = Field(description="True while a running job's trainer has yet to stop")

    model_config = {"json_schema_extra": {"example": examples.CANCEL}}


class JobMetrics(BaseModel):
    job_id: str
    metrics: list[dict[str, float]]

    model_config = {"json_schema_extra": {"example": examples.METRICS}}


class LogLine(BaseModel):
    seq: int = Field(description="The line's number in the job's log, from 1, one more each line")
    time: datetime = Field(description="When the trainer logged it (UTC)")
    level: str = Field(description="`INFO`, `WARNING` or `ERROR`")
    message: str


class JobLogs(BaseModel):
    lines: list[LogLine] = Field(description="The job's log lines after `after`, oldest first")
    next: int = Field(description="Pass as `after` for the lines that come next")
    done: bool = Field(description="The job has finished: no more lines will come")
    skipped: int | None = Field(
        None,
        description=f"Present when lines after `after` are no longer kept (a job keeps its last "
        f"{LOG_LINES}): how many of them this answer leaves out",
    )

    model_config = {
        "json_schema_extra": {
            "example": {
                "lines": [
                    {
                        "seq": 1,
                        "time": "2026-01-05T10:00:00.125000Z",
                        "level": "INFO",
                        "message": "preparing the dataset: module text, source tiny.txt",
                    }
                ],
                "next": 1,
                "done": False,
            }
        }
    }


class Preset(BaseModel):
    model_type: str
    n_layer: int
    n_head: int
    n_embd: int


class Presets(BaseModel):
    presets: list[Preset]

    model_config = {"json_schema_extra": {"example": examples.MODELS}}


# Dependencies that do no I/O are async, so FastAPI runs them inline rather than on a worker thread.
async def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


async def _job_id(job_id: str) -> str:
    """Turn a path id that cannot name a job into a 404 before it reaches Redis or the disk."""
    if not JOB_ID.fullmatch(job_id):
        raise ApiError(404, "not_found", "not a job id: job ids are 1 to 64 lowercase hex digits")
    return job_id


def no_such_job(job_id: str) -> ApiError:
    """The 404 for a well-formed id with no record (also sent by :mod:`gateway.job_reads`)."""
    return ApiError(404, "not_found", f"no job with id {job_id}")


def not_ready(job: JobView, what: str, code: str) -> ApiError:
    """The 404 for a job output that is not there: "yet" only while the job may still write it."""
    details = [{"job_id": job.id, "status": job.status.value}]
    if job.status.finished:
        return ApiError(404, code, f"the job {job.status.value} without a {what}; none will come", details)
    return ApiError(404, code, f"no {what} yet, job is {job.status.value}", details)


Queue = Annotated[JobQueue, Depends(_queue)]
JobId = Annotated[str, Depends(_job_id)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeating a submit with the same key (within a day) returns the same job, "
        "so a retried request never trains twice.",
    ),
]


async def existing_job(job_id: JobId, request: Request) -> JobView:
    """A dependency: the job's record, or a 404 before any response starts (streams need this).

    It reads with the app's asyncio Redis client: the most frequent request (polling a job) then
    never waits for a thread.
    """
    job = await read_job(request, job_id)
    if job is None:
        raise no_such_job(job_id)
    return job


async def read_job(request: Request, job_id: str) -> JobView | None:
    """The job as readers see it, read with the app's asyncio Redis client; None when there is none."""
    prefix = request.app.state.settings.key_prefix
    fields = await request.app.state.aredis.hgetall(job_key(prefix, job_id))
    return decode_view(job_id, fields) if fields else None


@router.post(
    "",
    status_code=202,
    summary="Submit a training job",
    responses={
        409: error_doc("The Idempotency-Key was used before with a different spec"),
        413: error_doc("The body is over the size limit"),
        422: error_doc(
            "The spec is invalid, over the memory limits, names a module, tokenizer or source the data "
            "service refuses, or an `init_from` job whose checkpoint it cannot start from; `details` names "
            "each field"
        ),
    },
)
async def submit_job(
    spec: Annotated[JobSpec, Body(openapi_examples=examples.SUBMIT_EXAMPLES)],
    queue: Queue,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    await check_spec(spec, request)
    return await run_in_threadpool(submit_checked, spec, queue, request, response, idempotency_key)


async def check_spec(spec: JobSpec, request: Request, prefix: str = "") -> None:
    """Refuse with a 422 what a valid spec still cannot run as: over the memory limits, a checkpoint to
    start from that does not fit, a dataset the data service refuses. ``prefix``: where the spec's fields
    sit in the request body."""
    settings = request.app.state.settings
    refuse([(prefix + e.field, e.message) for e in limit_errors(spec, settings)], "limit_exceeded")
    if spec.init_from is not None:
        source = await read_job(request, spec.init_from)
        refuse(init_from_problems(spec, source, settings.jobs_dir, prefix), "init_from_refused")
    # The gateway's data service is the one to ask; a job naming another is checked by its trainer.
    if spec.data_service in (None, settings.data_service_addr):
        problems = await dataset_problems(request, spec.dataset)
        refuse([(prefix + field, message) for field, message in problems], "dataset_refused")


def submit_checked(
    spec: JobSpec, queue: JobQueue, request: Request, response: Response, idempotency_key: str | None
) -> Accepted:
    """Queue the job (Redis calls: on a worker thread)."""
    if idempotency_key is None:
        job, created = queue.submit(spec), True
    else:
        try:
            job, created = queue.submit_once(spec, idempotency_key, request.app.state.gw.idempotency_ttl_s)
        except IdempotencyConflict as e:
            raise ApiError(409, "idempotency_conflict", str(e), [{"job_id": e.job_id}]) from None
        response.headers["Idempotent-Replayed"] = "false" if created else "true"
    if created:
        request.app.state.metrics.submitted.inc()
    response.headers["Location"] = f"{router.prefix}/{job.id}"
    return Accepted(id=job.id, status=job.status)


def refuse(errors: list[tuple[str, str]], kind: str) -> None:
    """A 422 naming each (field, message): a spec that is valid but cannot run (see :func:`check_spec`)."""
    if errors:
        details = [{"field": f, "in": "body", "message": m, "type": kind} for f, m in errors]
        message = "invalid request: " + "; ".join(f"{f}: {m}" for f, m in errors)
        raise ApiError(422, "validation_error", message, details)


@router.get(
    "",
    summary="List jobs, newest first, optionally by status, tags and name",
    responses={422: error_doc("Bad query")},
)
def list_jobs(
    queue: Queue,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    tag: Annotated[
        list[str] | None,
        Query(max_length=MAX_TAGS, description="Only jobs with this tag; repeat for jobs with every one"),
    ] = None,
    name: Annotated[
        str | None,
        Query(min_length=1, max_length=128, description="Only jobs whose name contains this (any case)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Jobs per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the page before")
    ] = None,
) -> JobPage:
    tags = tag or []
    for i, word in enumerate(tags):
        try:
            check_tag(word)
        except ValueError as e:
            details = [{"field": f"tag.{i}", "in": "query", "message": str(e), "type": "value_error"}]
            raise ApiError(422, "validation_error", f"invalid request: tag: {e}", details) from None
    try:
        jobs, next_cursor = queue.list(status=status, limit=limit, cursor=cursor, tags=tags, name=name)
    except ValueError as e:
        details = [{"field": "cursor", "in": "query", "message": str(e), "type": "value_error"}]
        raise ApiError(422, "validation_error", f"invalid request: cursor: {e}", details) from None
    return JobPage(jobs=jobs, next_cursor=next_cursor)


@router.get(
    "/{job_id}",
    responses=_NOT_FOUND | {200: {"content": {"application/json": {"example": examples.RECORD}}}},
    summary="A job's status, progress and latest metrics",
)
async def get_job(job: Annotated[JobView, Depends(existing_job)]) -> JobView:
    return job


@router.post(
    "/{job_id}/cancel",
    responses=_NOT_FOUND
    | {
        202: {"description": "The job is running; its trainer stops at the next step", "model": CancelResult},
        409: error_doc("The job already finished (succeeded or failed)"),
    },
    summary="Cancel a job: a queued one at once, a running one at its next step (with a checkpoint)",
)
def cancel_job(job_id: JobId, queue: Queue, response: Response) -> CancelResult:
    record = queue.request_cancel(job_id)
    if record is None:
        raise no_such_job(job_id)
    if record.status in (JobStatus.succeeded, JobStatus.failed):
        details = [{"job_id": job_id, "status": record.status.value}]
        raise ApiError(409, "job_finished", f"job {job_id} already {record.status.value}", details)
    requested = record.status is JobStatus.running
    if requested:
        response.status_code = 202
    return CancelResult(id=job_id, status=record.status, cancel_requested=requested)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    responses=_NOT_FOUND | {409: error_doc("The job has not finished; cancel it first")},
    summary="Delete a finished job: its record, metrics, report, checkpoint and files",
)
def delete_job(job_id: JobId, queue: Queue, request: Request) -> Response:
    status = queue.delete(job_id)
    if status is None:
        raise no_such_job(job_id)
    if not status.finished:
        details = [{"job_id": job_id, "status": status.value}]
        raise ApiError(409, "job_not_finished", f"job {job_id} is {status.value}; cancel it first", details)
    shutil.rmtree(request.app.state.settings.jobs_dir / job_id, ignore_errors=True)
    return Response(status_code=204)


@router.get("/{job_id}/metrics", responses=_NOT_FOUND, summary="A job's logged metrics, in step order")
def get_metrics(
    job: Annotated[JobView, Depends(existing_job)],
    queue: Queue,
    since_step: Annotated[int, Query(ge=0, description="Only rows at this step or later")] = 0,
) -> JobMetrics:
    return JobMetrics(job_id=job.id, metrics=queue.metrics(job.id, since_step))


@router.get(
    "/{job_id}/logs",
    response_model_exclude_none=True,
    responses=_NOT_FOUND | {422: error_doc("`after` is negative")},
    summary="The job's own log lines (data, training, evaluations, checkpoints, verdict), to follow",
)
def get_logs(
    job: Annotated[JobView, Depends(existing_job)],
    queue: Queue,
    after: Annotated[int, Query(ge=0, description="Lines after this `seq`: the last `next`")] = 0,
) -> JobLogs:
    # The record was read first: a job finished then has every line it will have by now.
    lines, next_after = queue.logs(job.id, after)
    skipped = lines[0]["seq"] - after - 1 if lines else 0
    return JobLogs(
        lines=[LogLine(**line | {"time": datetime.fromtimestamp(line["time"], UTC)}) for line in lines],
        next=next_after,
        done=job.status.finished,
        skipped=skipped or None,
    )


@router.get(
    "/{job_id}/report",
    responses=_NOT_FOUND | {200: {"content": {"application/json": {"example": examples.REPORT}}}},
    summary="The fit report the trainer wrote (404 `report_not_ready` until the job succeeds)",
)
def get_report(job: Annotated[JobView, Depends(existing_job)], queue: Queue) -> dict[str, Any]:
    report = queue.report(job.id)
    if report is None:
        raise not_ready(job, "report", "report_not_ready")
    return report


@router.get(
    "/{job_id}/checkpoint",
    response_class=FileResponse,
    responses=_NOT_FOUND
    | {
        200: {"content": {"application/octet-stream": {}}, "description": "A PyTorch checkpoint (torch.load)"}
    },
    summary="Download the job's latest checkpoint (404 `checkpoint_not_ready` until one is saved)",
)
def get_checkpoint(job: Annotated[JobView, Depends(existing_job)], request: Request) -> FileResponse:
    path = request.app.state.settings.jobs_dir / job.id / "checkpoint.pt"
    if not path.is_file():
        raise not_ready(job, "checkpoint", "checkpoint_not_ready")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{job.id}-checkpoint.pt")


@models_router.get("", summary="The model presets a job's `model.model_type` may name")
def list_models() -> Presets:
    return Presets(
        presets=[
            Preset(model_type=name, n_layer=layers, n_head=heads, n_embd=embd)
            for name, (layers, heads, embd) in MODEL_PRESETS.items()
        ]
    )
