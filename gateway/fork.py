"""``POST /v1/jobs/{id}/fork``: a new job from an existing one's spec, some settings changed, optionally
starting from its checkpoint ("train 500 more steps at a lower learning rate" is one request).

The changes are a partial spec deep-merged into the source's: a mapping merges key by key, anything else
(a number, a list of tags, null) replaces what was there. The new spec records ``forked_from``, and
``init_from`` when it starts from the checkpoint; it then goes through every check a submit does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.concurrency import run_in_threadpool

from gateway.errors import ApiError, error_doc
from gateway.jobs import (
    Accepted,
    IdempotencyKey,
    JobId,
    Queue,
    check_spec,
    no_such_job,
    read_job,
    submit_checked,
)
from gateway.jobs import router as jobs_router
from gateway.lineage import checkpoint_path, no_checkpoint
from simtrain.jobs import JobSpec
from simtrain.spec_merge import deep_merge

router = APIRouter(prefix=jobs_router.prefix, tags=["jobs"])

# Set by the fork itself from the request, never merged in.
LINEAGE = ("init_from", "forked_from")


class ForkRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "changes": {"training": {"max_iters": 500, "learning_rate": 1e-4}, "name": "lower lr"},
                "init_from_checkpoint": True,
            }
        },
    )

    changes: dict[str, Any] = Field(
        default_factory=dict,
        description="A partial job spec: what differs from the source job's spec (deep-merged into it)",
    )
    init_from_checkpoint: StrictBool = Field(
        default=False,
        description="Start from the source job's latest checkpoint weights (fresh optimizer, from step 0) "
        "instead of a fresh initialisation",
    )


def _invalid_changes(e: ValidationError) -> RequestValidationError:
    """The merged spec's errors, each named by where the field sits in the request: ``changes.<field>``."""
    return RequestValidationError([err | {"loc": ("body", "changes", *err["loc"])} for err in e.errors()])


@router.post(
    "/{job_id}/fork",
    status_code=202,
    summary="Fork a job: its spec with some settings changed, optionally from its checkpoint",
    responses={
        404: error_doc("No such job (or not a job id)"),
        409: error_doc(
            "`init_from_checkpoint` but the job has no checkpoint (yet); or its spec cannot be read; or the "
            "Idempotency-Key was used before with a different spec"
        ),
        422: error_doc(
            "The changed spec is invalid, or cannot run (as for a submit), or its model does not fit the "
            "checkpoint; `details` names each field as `changes.<field>`"
        ),
    },
)
async def fork_job(
    job_id: JobId,
    fork: Annotated[ForkRequest, Body()],
    queue: Queue,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    source = await read_job(request, job_id)
    if source is None:
        raise no_such_job(job_id)
    if source.spec is None:
        message = f"job {job_id}'s spec cannot be read ({source.error}), so there is nothing to fork"
        raise ApiError(409, "spec_unreadable", message, [{"job_id": job_id}])
    for key in LINEAGE:
        if key in fork.changes:
            message = f"{key} is set by the fork itself (use init_from_checkpoint)"
            details = [{"field": f"changes.{key}", "in": "body", "message": message, "type": "value_error"}]
            raise ApiError(422, "validation_error", f"invalid request: changes.{key}: {message}", details)
    jobs_dir = request.app.state.settings.jobs_dir
    if fork.init_from_checkpoint and not checkpoint_path(jobs_dir, job_id).is_file():
        details = [{"job_id": job_id, "status": source.status.value}]
        raise ApiError(409, "checkpoint_not_ready", no_checkpoint(source), details)

    merged = deep_merge(source.spec.model_dump(mode="json"), fork.changes)
    merged |= {"forked_from": job_id, "init_from": job_id if fork.init_from_checkpoint else None}
    try:
        spec = JobSpec.model_validate(merged)
    except ValidationError as e:
        raise _invalid_changes(e) from None
    await check_spec(spec, request, prefix="changes.")
    return await run_in_threadpool(submit_checked, spec, queue, request, response, idempotency_key)
