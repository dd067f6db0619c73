"""``GET /v1/datasets/{id}/rows``: the rows of a split exactly as training sees them (the data service's
GetRows), each token decoded and marked trained, masked or padding, for a person to read page by page."""

from __future__ import annotations

from typing import Annotated, Literal

import grpc
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from gateway.datasets import _DATA_ERRORS, _DATASET_ID, LIST_TIMEOUT_S, _stub, grpc_error
from gateway.errors import ApiError, error_doc
from simtrain.data.v1 import data_service_pb2 as pb

router = APIRouter(tags=["datasets"])

# Rows per request: a page a person reads, small enough to answer at once.
MAX_COUNT = 64
MAX_BLOCK_SIZE = 8192
# Far past any split's last row, and within the message's int64.
MAX_START = 2**62
ROLES = {
    pb.TOKEN_ROLE_TRAINED: "trained",
    pb.TOKEN_ROLE_MASKED: "masked",
    pb.TOKEN_ROLE_PADDING: "padding",
}

Role = Literal["trained", "masked", "padding"]


class RowToken(BaseModel):
    id: int
    text: str = Field(description="The token decoded alone (part of a multi-byte character shows as U+FFFD)")
    role: Role = Field(
        description="trained: loss is taken on predicting it; masked: input only, its target is -1 (a "
        "pair's prompt, a row's first token); padding: filler after a pair's end"
    )
    special: bool = Field(description="A special token such as <|endoftext|>: its text is its name")


class Row(BaseModel):
    index: int = Field(description="The row's number in the split, from 0")
    token_offset: int = Field(description="Where its first token sits in the split's token stream")
    truncated: bool = Field(description="A pair longer than block_size + 1 tokens, cut there in training")
    tokens: list[RowToken] = Field(
        description="block_size + 1 tokens: x is all but the last, y all but the first"
    )


class DatasetRows(BaseModel):
    dataset_id: str
    split: str
    start: int
    block_size: int
    packing: str
    total_rows: int = Field(description="Rows in the split at this block size")
    rows: list[Row]

    model_config = {
        "json_schema_extra": {
            "example": {
                "dataset_id": "3f1c9a0e5b7d2c48",
                "split": "train",
                "start": 0,
                "block_size": 4,
                "packing": "pairs",
                "total_rows": 120,
                "rows": [
                    {
                        "index": 0,
                        "token_offset": 0,
                        "truncated": False,
                        "tokens": [
                            {"id": 17, "text": "Q", "role": "masked", "special": False},
                            {"id": 4, "text": ":", "role": "masked", "special": False},
                            {"id": 21, "text": "A", "role": "trained", "special": False},
                            {"id": 30, "text": "<|endoftext|>", "role": "trained", "special": True},
                            {"id": 30, "text": "<|endoftext|>", "role": "padding", "special": True},
                        ],
                    }
                ],
            }
        }
    }


def _row(row: pb.Row) -> Row:
    return Row(
        index=row.index,
        token_offset=row.token_offset,
        truncated=row.truncated,
        tokens=[
            # A role this gateway does not know (a newer data service) is shown as not trained.
            RowToken(id=t.id, text=t.text, role=ROLES.get(t.role, "masked"), special=t.special)
            for t in row.tokens
        ],
    )


@router.get(
    "/v1/datasets/{dataset_id}/rows",
    summary="A split's rows as training sees them: tokens decoded, trained vs masked vs padding",
    responses=_DATA_ERRORS | {422: error_doc("A bad split, start, count or block_size")},
)
async def dataset_rows(
    dataset_id: str,
    request: Request,
    split: Annotated[Literal["train", "val"], Query(description="The split to read")] = "train",
    start: Annotated[int, Query(ge=0, le=MAX_START, description="The first row, from 0")] = 0,
    count: Annotated[int, Query(ge=1, le=MAX_COUNT, description="How many rows")] = 8,
    block_size: Annotated[
        int, Query(ge=1, le=MAX_BLOCK_SIZE, description="The block size training would use")
    ] = 64,
) -> DatasetRows:
    if not _DATASET_ID.fullmatch(dataset_id):
        raise ApiError(404, "not_found", "not a dataset id: 1 to 128 of A-Z a-z 0-9 _ . -")
    message = pb.GetRowsRequest(
        dataset_id=dataset_id, split=split, start=start, count=count, block_size=block_size
    )
    try:
        reply = await _stub(request).GetRows(message, timeout=LIST_TIMEOUT_S)
    except grpc.RpcError as e:
        error = grpc_error(e, f"rows of dataset {dataset_id}")
        if error.status == 501:
            error.message = "this data service cannot show a dataset's rows (it does not implement GetRows)"
        raise error from None
    return DatasetRows(
        dataset_id=dataset_id,
        split=split,
        start=start,
        block_size=block_size,
        packing=reply.packing,
        total_rows=reply.total_rows,
        rows=[_row(r) for r in reply.rows],
    )
