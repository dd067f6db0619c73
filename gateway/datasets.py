"""Data modules, datasets and source uploads: REST in front of the data service's gRPC API.

The gateway holds one asyncio gRPC channel to the default data service. A data-service status code
becomes an HTTP status (see ``_HTTP_STATUS``) with the data service's own message, never a 500.
Uploads stream: the body is read in pieces and sent on as ``UploadChunk`` messages as it arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway import examples
from gateway.errors import ApiError, error_doc
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.jobs import DatasetSpec, OptionValue
from simtrain.prepare_request import prepare_request

router = APIRouter(tags=["datasets"])
log = logging.getLogger(__name__)

_DATASET_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
LIST_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 5.0
UPLOAD_TIMEOUT_S = 3600.0

# status code -> (HTTP status, error code)
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (422, "invalid_argument"),
    grpc.StatusCode.FAILED_PRECONDITION: (422, "failed_precondition"),
    grpc.StatusCode.OUT_OF_RANGE: (422, "out_of_range"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (413, "payload_too_large"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "forbidden"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented"),
    grpc.StatusCode.UNAVAILABLE: (503, "dependency_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "dependency_timeout"),
}
_DATA_ERRORS = {
    404: error_doc("Not found on the data service"),
    501: error_doc("The data service does not implement this call"),
    502: error_doc("The data service failed"),
    503: error_doc("The data service is unreachable"),
}


def grpc_error(e: grpc.RpcError, what: str) -> ApiError:
    """The ApiError for a failed data-service call: its code mapped, its message kept."""
    code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
    message = (e.details() if callable(getattr(e, "details", None)) else None) or code.name
    status, error_code = _HTTP_STATUS.get(code, (502, "data_service_error"))
    details = [{"dependency": "data_service", "grpc_status": code.name}]
    if status == 503:
        message = f"the data service is unreachable ({message}); try again shortly"
    return ApiError(status, error_code, f"{what}: {message}", details)


def _stub(request: Request) -> pb_grpc.DataServiceStub:
    return request.app.state.data_stub


class ModuleOption(BaseModel):
    name: str
    description: str
    default: str


class ModuleInfo(BaseModel):
    name: str
    description: str
    options: list[ModuleOption]


class Modules(BaseModel):
    modules: list[ModuleInfo]

    model_config = {"json_schema_extra": {"example": examples.MODULES}}


class SplitInfo(BaseModel):
    tokens: int
    examples: int


class DatasetInfo(BaseModel):
    id: str
    module: str
    source: str
    tokenizer: str
    packing: str
    vocab_size: int
    splits: dict[str, SplitInfo]
    stats: dict[str, Any]
    warnings: list[str]

    model_config = {"json_schema_extra": {"example": examples.DATASET}}


class Datasets(BaseModel):
    datasets: list[DatasetInfo]


class PrepareRequest(BaseModel):
    """Which module reads which source, and how to tokenize it; the same request gives the same id."""

    module: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=1024)
    tokenizer: str = Field(default="char", min_length=1, max_length=64)
    packing: str = Field(default="stream", min_length=1, max_length=64)
    options: dict[str, OptionValue] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": examples.PREPARE})


class Uploaded(BaseModel):
    source: str = Field(
        description="The name to use as `source` when preparing a dataset or submitting a job"
    )
    size_bytes: int
    sha256: str

    model_config = {"json_schema_extra": {"example": examples.UPLOAD}}


class SourceFile(BaseModel):
    name: str = Field(description="The name a dataset's `source` accepts")
    size_bytes: int
    uploaded_at: str = Field(description="When it was stored, ISO 8601 in UTC")


class Sources(BaseModel):
    sources: list[SourceFile] = Field(description="Sorted by name")

    model_config = {"json_schema_extra": {"example": examples.SOURCES}}


def _dataset(info: pb.DatasetInfo) -> DatasetInfo:
    try:
        stats = json.loads(info.stats_json) if info.stats_json else {}
    except ValueError:
        stats = {"unparsed": info.stats_json}
    return DatasetInfo(
        id=info.dataset_id,
        module=info.module,
        source=info.source,
        tokenizer=info.tokenizer,
        packing=info.packing,
        vocab_size=info.vocab_size,
        splits={s.name: SplitInfo(tokens=s.num_tokens, examples=s.num_examples) for s in info.splits},
        stats=stats if isinstance(stats, dict) else {"value": stats},
        warnings=list(info.warnings),
    )


@router.get("/v1/modules", summary="The data modules the data service offers", responses=_DATA_ERRORS)
async def list_modules(request: Request) -> Modules:
    try:
        reply = await _stub(request).ListModules(pb.ListModulesRequest(), timeout=LIST_TIMEOUT_S)
    except grpc.RpcError as e:
        raise grpc_error(e, "listing modules") from None
    return Modules(
        modules=[
            ModuleInfo(
                name=m.name,
                description=m.description,
                options=[
                    ModuleOption(name=o.name, description=o.description, default=o.default_value)
                    for o in m.options
                ],
            )
            for m in reply.modules
        ]
    )


@router.get("/v1/datasets", summary="The datasets prepared on the data service", responses=_DATA_ERRORS)
async def list_datasets(request: Request) -> Datasets:
    try:
        reply = await _stub(request).ListDatasets(pb.ListDatasetsRequest(), timeout=LIST_TIMEOUT_S)
    except grpc.RpcError as e:
        raise grpc_error(e, "listing datasets") from None
    return Datasets(datasets=[_dataset(d) for d in reply.datasets])


@router.get("/v1/datasets/{dataset_id}", summary="Describe a prepared dataset", responses=_DATA_ERRORS)
async def get_dataset(dataset_id: str, request: Request) -> DatasetInfo:
    if not _DATASET_ID.fullmatch(dataset_id):
        raise ApiError(404, "not_found", "not a dataset id: 1 to 128 of A-Z a-z 0-9 _ . -")
    try:
        reply = await _stub(request).GetDataset(
            pb.GetDatasetRequest(dataset_id=dataset_id), timeout=LIST_TIMEOUT_S
        )
    except grpc.RpcError as e:
        raise grpc_error(e, f"dataset {dataset_id}") from None
    return _dataset(reply)


@router.post(
    "/v1/datasets",
    summary="Prepare a dataset from a module and a source (idempotent: same input, same id)",
    responses=_DATA_ERRORS | {422: error_doc("Invalid request, or the data service refused the source")},
)
async def prepare_dataset(body: PrepareRequest, request: Request) -> DatasetInfo:
    message = prepare_request(body.module, body.source, body.tokenizer, body.packing, body.options)
    timeout = request.app.state.gw.data_service_timeout_s
    try:
        reply = await _stub(request).PrepareDataset(message, timeout=timeout)
    except grpc.RpcError as e:
        raise grpc_error(e, f"preparing {body.source!r} with module {body.module!r}") from None
    return _dataset(reply)


async def dataset_problems(request: Request, dataset: DatasetSpec) -> list[tuple[str, str]]:
    """What the data service finds wrong with a job's dataset, as (field in the job, message).

    Empty also when it cannot be asked (unreachable, slow, or a stand-in without CheckDataset): the job is
    then accepted, and its trainer meets any problem when it prepares the dataset and fails the job with it.
    """
    if dataset.module is None or dataset.source is None:
        return []  # a prepared dataset's id: the trainer looks it up
    message = prepare_request(
        dataset.module, dataset.source, dataset.tokenizer, dataset.packing, dataset.options
    )
    try:
        reply = await _stub(request).CheckDataset(message, timeout=CHECK_TIMEOUT_S)
    except grpc.RpcError as e:
        log.info("dataset not checked at submit (%s): the trainer checks it", grpc_error(e, "CheckDataset"))
        return []
    return [(f"dataset.{p.field}" if p.field else "dataset", p.message) for p in reply.problems]


@router.post(
    "/v1/sources",
    status_code=201,
    summary="Upload a source file (the raw bytes as the body); it streams to the data service",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses=_DATA_ERRORS | {413: error_doc("The upload is over the size limit")},
)
async def upload_source(
    request: Request,
    filename: Annotated[
        str,
        Query(
            min_length=1,
            max_length=255,
            pattern=r"^[^/\\\x00-\x1f]+$",
            description="The wanted file name; the data service may change it (see `source` in the answer)",
        ),
    ],
) -> Uploaded:
    chunk_bytes = request.app.state.gw.upload_chunk_bytes
    broke_off: list[BaseException] = []  # why reading the body stopped, if it did

    async def chunks() -> AsyncIterator[pb.UploadChunk]:
        pending, name = bytearray(), filename  # only the first chunk names the file
        try:
            async for piece in request.stream():
                pending += piece
                while len(pending) >= chunk_bytes:
                    yield pb.UploadChunk(filename=name, data=bytes(pending[:chunk_bytes]))
                    del pending[:chunk_bytes]
                    name = ""
        except BaseException as e:  # over the limit, or the client went away: gRPC then cancels the call
            broke_off.append(e)
            raise
        if pending or name:
            yield pb.UploadChunk(filename=name, data=bytes(pending))

    try:
        result = await _stub(request).UploadSource(chunks(), timeout=UPLOAD_TIMEOUT_S)
    except (grpc.RpcError, asyncio.CancelledError) as e:
        if broke_off:  # the data service did not keep a part: the call was cancelled, not finished
            raise broke_off[0] from None
        if isinstance(e, asyncio.CancelledError):
            raise
        raise grpc_error(e, f"uploading {filename!r}") from None
    return Uploaded(source=result.source, size_bytes=result.size_bytes, sha256=result.sha256)


@router.get("/v1/sources", summary="The source files uploaded to the data service", responses=_DATA_ERRORS)
async def list_sources(request: Request) -> Sources:
    try:
        reply = await _stub(request).ListSources(pb.ListSourcesRequest(), timeout=LIST_TIMEOUT_S)
    except grpc.RpcError as e:
        error = grpc_error(e, "listing uploaded sources")
        if error.status == 501:  # a data service older than the listing, or another one
            error.message = (
                "this data service cannot list its uploaded sources: name the file in the dataset's source "
                "(an upload answers with its name)"
            )
        raise error from None
    listed = [
        SourceFile(
            name=s.name,
            size_bytes=s.size_bytes,
            uploaded_at=s.uploaded_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        for s in reply.sources
    ]
    return Sources(sources=sorted(listed, key=lambda s: s.name))
