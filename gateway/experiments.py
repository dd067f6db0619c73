"""The `/v1/experiments` endpoints (variants × seeds run as ordinary jobs, then compared) and `/v1/compare`
(the same comparison of jobs already run)."""

from __future__ import annotations

import json
import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.datasets import dataset_problems
from gateway.errors import ApiError, error_doc
from gateway.jobs import JOB_ID, NameQuery, Queue, TagQuery, checked_tags, no_such_job, refuse
from simtrain.compare import LABELS, compare
from simtrain.experiment_store import ExperimentStore, run_results
from simtrain.experiments import ExperimentSpec, ExperimentView, InvalidVariants, expand, variant_spec
from simtrain.limits import limit_errors

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
compare_router = APIRouter(prefix="/v1/compare", tags=["experiments"])

_NOT_FOUND = {404: error_doc("No such experiment (or not an experiment id)")}
EXAMPLE = {
    "name": "char or byte tokenizer",
    "base": {
        "dataset": {"module": "text", "source": "tiny.txt"},
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32},
        "training": {"max_iters": 60, "batch_size": 8, "block_size": 32, "eval_interval": 30},
    },
    "variants": {"char": {}, "byte": {"dataset": {"tokenizer": "byte"}}},
    "seeds": 2,
}


class ExperimentAccepted(BaseModel):
    id: str
    jobs: list[dict[str, Any]] = Field(description="Each run: `variant`, `seed`, `job_id`")


class ExperimentList(BaseModel):
    experiments: list[ExperimentView] = Field(description="Newest first")


class CompareRequest(BaseModel):
    model_config = {"extra": "forbid"}

    jobs: list[Annotated[str, Field(pattern=f"^{JOB_ID.pattern}$")]] = Field(
        min_length=2,
        max_length=64,
        description="Job ids; jobs whose specs differ only in the seed are one variant",
    )


async def _store(request: Request) -> ExperimentStore:
    return ExperimentStore(request.app.state.queue)


async def _experiment_id(experiment_id: str) -> str:
    if not JOB_ID.fullmatch(experiment_id):
        raise ApiError(404, "not_found", "not an experiment id: ids are 1 to 64 lowercase hex digits")
    return experiment_id


Store = Annotated[ExperimentStore, Depends(_store)]
ExperimentId = Annotated[str, Depends(_experiment_id)]


def _no_such_experiment(experiment_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no experiment with id {experiment_id}")


@router.post(
    "",
    status_code=202,
    summary="Run an experiment: every variant × seed is queued as a job",
    responses={
        422: error_doc(
            "The experiment or a variant's job spec is invalid; `details` name the variant and field"
        )
    },
)
async def submit_experiment(
    spec: Annotated[ExperimentSpec, Body(openapi_examples={"tokenizers": {"value": EXAMPLE}})],
    store: Store,
    request: Request,
) -> ExperimentAccepted:
    try:
        runs = expand(spec)
    except InvalidVariants as e:
        refuse([(p.field, p.message) for p in e.problems], "value_error")
    settings = request.app.state.settings
    first = {name: next(r for r in runs if r.variant == name) for name in spec.variants}
    over = [
        (f"variants.{n}.{e.field}", f"variant {n}: {e.message}")
        for n, r in first.items()
        for e in limit_errors(r.spec, settings)
    ]
    refuse(over, "limit_exceeded")
    refused: list[tuple[str, str]] = []
    asked: dict[str, list[tuple[str, str]]] = {}  # the data service checks each distinct dataset once
    for name, run in first.items():
        if run.spec.data_service in (None, settings.data_service_addr):
            key = run.spec.dataset.model_dump_json()
            if key not in asked:
                asked[key] = await dataset_problems(request, run.spec.dataset)
            refused += [
                (f"variants.{name}.{field}", f"variant {name}: {message}") for field, message in asked[key]
            ]
    refuse(refused, "dataset_refused")
    experiment_id = await run_in_threadpool(store.create, spec, runs)
    request.app.state.metrics.submitted.inc(len(runs))
    return ExperimentAccepted(id=experiment_id, jobs=store.run_ids(experiment_id))


@router.get("", summary="List experiments, newest first, optionally by tags and name")
def list_experiments(
    store: Store,
    limit: Annotated[int, Query(ge=1, le=200, description="Experiments to list")] = 50,
    tag: TagQuery = None,
    name: NameQuery = None,
) -> ExperimentList:
    return ExperimentList(experiments=store.list(limit, tags=checked_tags(tag), name=name))


@router.get(
    "/{experiment_id}", responses=_NOT_FOUND, summary="An experiment: each run's status, and the comparison"
)
def get_experiment(experiment_id: ExperimentId, store: Store) -> dict[str, Any]:
    view = store.get(experiment_id)
    if view is None:
        raise _no_such_experiment(experiment_id)
    return view.model_dump(mode="json") | {"comparison": _comparison(store, view)}


def _comparison(store: ExperimentStore, view: ExperimentView) -> dict[str, Any]:
    runs = [(r.variant, r.seed, r.job_id) for r in view.runs]
    specs = {name: variant_spec(view.spec, name) for name in view.spec.variants}
    return compare(run_results(store.queue, runs), specs)


@router.get(
    "/{experiment_id}/comparison",
    responses=_NOT_FOUND,
    summary="The comparison: ranking, loss mean ± spread per variant, checks, data and spec side by side",
)
def get_comparison(experiment_id: ExperimentId, store: Store) -> dict[str, Any]:
    view = store.get(experiment_id)
    if view is None:
        raise _no_such_experiment(experiment_id)
    return _comparison(store, view)


@router.get(
    "/{experiment_id}/curves.png",
    response_class=Response,
    responses=_NOT_FOUND
    | {200: {"content": {"image/png": {}}, "description": "Val loss per variant: mean and band"}},
    summary="The val-loss curves of every variant: mean over seeds, with the min-max band",
)
def get_curves(experiment_id: ExperimentId, store: Store) -> Response:
    view = store.get(experiment_id)
    if view is None:
        raise _no_such_experiment(experiment_id)
    results = run_results(store.queue, [(r.variant, r.seed, r.job_id) for r in view.runs])
    unit = compare(results)["unit"]
    from simtrain.compare_plot import curves_png  # matplotlib loads on the first plot, not at startup

    png = curves_png(results, f"experiment {view.name}", unit)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.post(
    "/{experiment_id}/cancel",
    responses=_NOT_FOUND,
    summary="Cancel every run: queued ones at once, running ones at their next step",
)
def cancel_experiment(experiment_id: ExperimentId, store: Store) -> ExperimentView:
    view = store.cancel(experiment_id)
    if view is None:
        raise _no_such_experiment(experiment_id)
    return view


@router.delete(
    "/{experiment_id}",
    status_code=204,
    response_class=Response,
    responses=_NOT_FOUND | {409: error_doc("A run has not finished; cancel the experiment first")},
    summary="Delete an experiment and its runs' jobs (every run finished)",
)
def delete_experiment(experiment_id: ExperimentId, store: Store, request: Request) -> Response:
    if store.get(experiment_id) is None:
        raise _no_such_experiment(experiment_id)
    unfinished = store.unfinished(experiment_id)
    if unfinished:
        details = [{"job_id": job_id, "status": status.value} for job_id, status in unfinished]
        raise ApiError(
            409,
            "experiment_not_finished",
            f"{len(unfinished)} run(s) have not finished; cancel first",
            details,
        )
    for job_id in store.delete(experiment_id):
        shutil.rmtree(request.app.state.settings.jobs_dir / job_id, ignore_errors=True)
    return Response(status_code=204)


@compare_router.post(
    "",
    summary="Compare jobs already run (jobs whose specs differ only in the seed count as one variant)",
    responses={
        404: error_doc("A job id names no job"),
        422: error_doc("Fewer than two job ids, or a bad one"),
    },
)
def compare_jobs(body: CompareRequest, queue: Queue) -> dict[str, Any]:
    groups: dict[str, str] = {}  # the spec without its seed and labels → variant name
    runs = []
    for job_id in dict.fromkeys(body.jobs):
        record = queue.get(job_id)
        if record is None:
            raise no_such_job(job_id)
        spec = record.spec.model_dump(mode="json")
        seed = spec["training"].pop("seed")
        for label in LABELS:
            spec.pop(label)
        name = groups.setdefault(json.dumps(spec, sort_keys=True), job_id[:8])
        runs.append((name, seed, job_id))
    return compare(run_results(queue, runs))
