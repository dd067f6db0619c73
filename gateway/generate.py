"""``POST /v1/jobs/{id}/generate``: ask a job's model, at its latest checkpoint, to continue a prompt.

The gateway holds no model and no torch: it puts the request on Redis and a generate server
(``python -m trainer_service.generate_server``) answers it (``simtrain.generate_queue``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway import examples
from gateway.errors import ApiError, error_doc
from gateway.jobs import existing_job
from simtrain.generate_queue import GenerateQueue, GenerateRequest, NoAnswer
from simtrain.jobs import JobView

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class Completion(BaseModel):
    text: str = Field(description="The model's continuation of the prompt, without the prompt")
    tokens: int = Field(description="Tokens generated (the end token not counted)")
    stopped: bool = Field(description="The model ended the answer itself (with the end token of pairs data)")


class RetrievedContext(BaseModel):
    text: str = Field(description="The passages put before the prompt, as the dataset's rows had theirs")
    passages: int = Field(description="How many passages were found for the prompt")


class GenerateResult(BaseModel):
    job_id: str
    step: int | None = Field(description="The training step of the checkpoint that answered")
    prompt: str
    completions: list[Completion]
    seconds: float = Field(description="How long the generate server took")
    context: RetrievedContext | None = Field(
        None, description="A model trained on a retrieval dataset: what its index found for the prompt"
    )
    note: str | None = Field(None, description="Why the prompt was asked without the context it needs")

    model_config = {"json_schema_extra": {"example": examples.GENERATE}}


def _unavailable(message: str) -> ApiError:
    return ApiError(503, "generate_unavailable", message)


@router.post(
    "/{job_id}/generate",
    responses={
        404: error_doc("No such job (or not a job id)"),
        409: error_doc("The job has no checkpoint yet, or its checkpoint cannot be sampled"),
        422: error_doc("A parameter is out of range, or the model's tokenizer cannot encode the prompt"),
        503: error_doc("No generate server answered within the gateway's timeout"),
    },
    summary="Ask the job's model (its latest checkpoint, running or finished) to continue a prompt",
)
async def generate(
    job: Annotated[JobView, Depends(existing_job)],
    body: Annotated[GenerateRequest, Body()],
    request: Request,
) -> GenerateResult:
    checkpoint = request.app.state.settings.jobs_dir / job.id / "checkpoint.pt"
    if not checkpoint.is_file():
        when = "none will come" if job.status.finished else "the first is saved at the job's first evaluation"
        details = [{"job_id": job.id, "status": job.status.value}]
        raise ApiError(
            409,
            "checkpoint_not_ready",
            f"job {job.id} ({job.status.value}) has no checkpoint yet; {when}",
            details,
        )
    queue: GenerateQueue = request.app.state.generate_queue
    if not await run_in_threadpool(queue.servers):
        raise _unavailable(
            "no generate server is running: start one with `python -m trainer_service.generate_server` "
            "beside the trainers (`simtrain up` and the deploy files start one)"
        )
    try:
        reply = await run_in_threadpool(queue.ask, job.id, body, request.app.state.gw.generate_timeout_s)
    except NoAnswer as e:
        raise _unavailable(str(e)) from None
    if reply.get("ok"):
        return GenerateResult(
            job_id=job.id,
            step=reply.get("step"),
            prompt=body.prompt,
            completions=[Completion(**c) for c in reply["completions"]],
            seconds=reply.get("seconds", 0.0),
            context=reply.get("context"),
            note=reply.get("note"),
        )
    code, message = reply.get("code"), str(reply.get("message", "the generate server gave no reason"))
    if code == "bad_prompt":
        details = [{"field": "prompt", "in": "body", "message": message, "type": "bad_prompt"}]
        raise ApiError(422, "validation_error", f"invalid request: prompt: {message}", details)
    if code == "no_checkpoint":
        raise ApiError(409, "checkpoint_not_ready", message, [{"job_id": job.id}])
    if code == "bad_checkpoint":
        raise ApiError(409, "checkpoint_unusable", message, [{"job_id": job.id}])
    raise ApiError(502, "generate_failed", message, [{"job_id": job.id}])
