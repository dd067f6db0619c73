"""GetRows over real gRPC, and GET /v1/datasets/{id}/rows over real HTTP in front of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from data_service.sampling import EpochOrder, step_rng
from gateway.app import create_app
from simtrain.cli import app
from simtrain.client import GatewayClient, GatewayError
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import GrpcServer, error_of, serve
from tests.integration.trainer_support import DataService

PAIRS = [{"prompt": f"What is {i} + {i}?", "completion": f" {2 * i}"} for i in range(40)]


@pytest.fixture(scope="module")
def stub(data_service: DataService) -> Iterator[pb_grpc.DataServiceStub]:
    with grpc.insecure_channel(data_service.address) as channel:
        yield pb_grpc.DataServiceStub(channel)


@pytest.fixture(scope="module")
def stream_id(stub: pb_grpc.DataServiceStub) -> str:
    request = pb.PrepareDatasetRequest(module="text", source="tiny.txt", tokenizer="char")
    return stub.PrepareDataset(request).dataset_id


@pytest.fixture(scope="module")
def pairs_id(stub: pb_grpc.DataServiceStub, data_service: DataService) -> str:
    path = data_service.settings.data_root / "sums.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    request = pb.PrepareDatasetRequest(module="jsonl", source="sums.jsonl", tokenizer="char", packing="pairs")
    return stub.PrepareDataset(request).dataset_id


@pytest.fixture(scope="module")
def small_id(stub: pb_grpc.DataServiceStub, data_service: DataService) -> str:
    """A text dataset of 200 characters, all in train."""
    (data_service.settings.data_root / "small.txt").write_text("abcdefghij" * 20, encoding="utf-8")
    request = pb.PrepareDatasetRequest(
        module="text", source="small.txt", tokenizer="char", options={"val_fraction": "0"}
    )
    return stub.PrepareDataset(request).dataset_id


@pytest.fixture
def client(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    with serve(create_app(settings)) as c:
        yield c


def get_rows(stub: pb_grpc.DataServiceStub, dataset_id: str, **kw: Any) -> pb.GetRowsResponse:
    args = {"split": "train", "start": 0, "count": 4, "block_size": 16} | kw
    return stub.GetRows(pb.GetRowsRequest(dataset_id=dataset_id, **args))


# -- the RPC ----------------------------------------------------------------------------------------


def test_stream_rows_are_consecutive_windows_of_the_split(stub: pb_grpc.DataServiceStub, stream_id: str):
    answer = get_rows(stub, stream_id, count=3)
    info = stub.GetDataset(pb.GetDatasetRequest(dataset_id=stream_id))
    train_tokens = next(s.num_tokens for s in info.splits if s.name == "train")
    assert answer.packing == "stream" and answer.total_rows == -(-(train_tokens - 1) // 16)
    assert [r.token_offset for r in answer.rows] == [0, 16, 32]
    for row in answer.rows:
        assert len(row.tokens) == 17
        assert [t.role for t in row.tokens] == [pb.TOKEN_ROLE_MASKED] + [pb.TOKEN_ROLE_TRAINED] * 16
        decoded = stub.Decode(pb.DecodeRequest(dataset_id=stream_id, tokens=[t.id for t in row.tokens])).text
        assert "".join(t.text for t in row.tokens) == decoded
    # The last token of a row is the first of the next.
    assert answer.rows[0].tokens[-1].id == answer.rows[1].tokens[0].id


def test_pair_rows_mark_the_prompt_masked_and_the_answer_trained(
    stub: pb_grpc.DataServiceStub, pairs_id: str
):
    answer = get_rows(stub, pairs_id, count=64, block_size=32)
    assert answer.packing == "pairs" and 0 < len(answer.rows) == answer.total_rows < len(PAIRS)
    for row in answer.rows:
        text = {r: "".join(t.text for t in row.tokens if t.role == r) for r in (1, 2, 3)}
        prompt, answer_text = text[pb.TOKEN_ROLE_MASKED], text[pb.TOKEN_ROLE_TRAINED]
        i = int(prompt.removeprefix("What is ").split(" ")[0])
        assert prompt == f"What is {i} + {i}?" and answer_text == f" {2 * i}<|endoftext|>"
        padding = [t for t in row.tokens if t.role == pb.TOKEN_ROLE_PADDING]
        assert len(row.tokens) == 33 and len(padding) == 33 - len(f"{prompt}{answer_text}") + 12
        assert all(t.special and t.text == "<|endoftext|>" for t in padding)


@pytest.mark.parametrize(
    ("kw", "code", "says"),
    [
        ({"dataset_id": "00000000deadbeef"}, grpc.StatusCode.NOT_FOUND, "not found"),
        ({"dataset_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "dataset_id is empty"),
        ({"split": "test"}, grpc.StatusCode.INVALID_ARGUMENT, "split must be one of train, val"),
        ({"start": -2}, grpc.StatusCode.INVALID_ARGUMENT, "start must not be negative"),
        ({"count": 0}, grpc.StatusCode.INVALID_ARGUMENT, "count must be from 1 to 256"),
        ({"block_size": -1}, grpc.StatusCode.INVALID_ARGUMENT, "block_size must be from 1"),
        ({"block_size": 200}, grpc.StatusCode.INVALID_ARGUMENT, "use block_size 199 or less"),
    ],
)
def test_bad_requests_get_a_status_and_a_message(
    stub: pb_grpc.DataServiceStub, small_id: str, kw: dict, code: grpc.StatusCode, says: str
):
    args = {"dataset_id": small_id} | kw
    with pytest.raises(grpc.RpcError) as e:
        get_rows(stub, **args)
    assert e.value.code() == code and says in e.value.details()


# -- the REST route ---------------------------------------------------------------------------------


def test_rest_rows_of_a_pairs_dataset(client: httpx.Client, pairs_id: str):
    response = client.get(f"/v1/datasets/{pairs_id}/rows", params={"count": 2, "block_size": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dataset_id"] == pairs_id and body["split"] == "train" and body["block_size"] == 8
    assert body["packing"] == "pairs" and body["total_rows"] > 2 and len(body["rows"]) == 2
    row = body["rows"][0]
    assert row["truncated"] and len(row["tokens"]) == 9  # every prompt is longer than 8 tokens
    assert {t["role"] for t in row["tokens"]} == {"masked"}  # so the whole row is prompt


def test_rest_rows_default_block_size_and_paging(client: httpx.Client, stream_id: str):
    first = client.get(f"/v1/datasets/{stream_id}/rows", params={"split": "val", "count": 3}).json()
    assert first["block_size"] == 64 and [len(r["tokens"]) for r in first["rows"]] == [65, 65, 65]
    later = client.get(f"/v1/datasets/{stream_id}/rows", params={"split": "val", "start": 2}).json()
    assert later["rows"][0] == first["rows"][2]
    past = client.get(f"/v1/datasets/{stream_id}/rows", params={"start": 10**9}).json()
    assert past["rows"] == [] and past["total_rows"] > first["total_rows"]  # train is larger than val


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"count": 65}, "count"),
        ({"count": 0}, "count"),
        ({"start": -1}, "start"),
        ({"start": 10**30}, "start"),
        ({"split": "test"}, "split"),
        ({"block_size": 0}, "block_size"),
        ({"block_size": "big"}, "block_size"),
    ],
)
def test_rest_bad_query_is_422_naming_the_field(
    client: httpx.Client, stream_id: str, params: dict, field: str
):
    error = error_of(client.get(f"/v1/datasets/{stream_id}/rows", params=params), 422)
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field] and field in error["message"]


def test_rest_block_size_over_the_split_is_422_with_the_data_services_reason(
    client: httpx.Client, small_id: str
):
    error = error_of(client.get(f"/v1/datasets/{small_id}/rows", params={"block_size": 300}), 422)
    assert "block_size 300 is too large" in error["message"] and "199 or less" in error["message"]


def test_an_empty_split_has_no_rows(client: httpx.Client, small_id: str):
    body = client.get(f"/v1/datasets/{small_id}/rows", params={"split": "val"}).json()
    assert body["total_rows"] == 0 and body["rows"] == []


@pytest.mark.parametrize("dataset_id", ["00000000deadbeef", "no-such-set", "bad%20id"])
def test_rest_unknown_dataset_is_404(client: httpx.Client, dataset_id: str):
    error = error_of(client.get(f"/v1/datasets/{dataset_id}/rows"), 404)
    assert error["code"] == "not_found"


def test_rest_rows_from_a_data_service_without_get_rows_is_501(
    redis_url: str, key_prefix: str, tmp_path
) -> None:
    health_only = GrpcServer()
    try:
        settings = Settings(
            redis_url=redis_url,
            key_prefix=key_prefix,
            data_service_addr=health_only.address,
            state_dir=tmp_path / "var",
        )
        with serve(create_app(settings)) as c:
            error = error_of(c.get("/v1/datasets/0123456789abcdef/rows"), 501)
        assert "does not implement GetRows" in error["message"]
    finally:
        health_only.stop()


def test_client_dataset_rows(client: httpx.Client, pairs_id: str):
    gateway = GatewayClient(str(client.base_url))
    try:
        body = gateway.dataset_rows(pairs_id, split="val", start=1, count=1, block_size=40)
        assert body["split"] == "val" and body["start"] == 1 and len(body["rows"]) == 1
        roles = [t["role"] for t in body["rows"][0]["tokens"]]
        assert roles[-1] == "padding" and "trained" in roles
        with pytest.raises(GatewayError) as e:
            gateway.dataset_rows(pairs_id, count=100)
        assert e.value.status == 422 and "count" in str(e.value)
    finally:
        gateway.close()


# -- the CLI ----------------------------------------------------------------------------------------


def inspect(client: httpx.Client, *args: str) -> Any:
    env = {"SIMTRAIN_GATEWAY_URL": str(client.base_url), "COLUMNS": "200", "SIMTRAIN_API_TOKEN": None}
    return CliRunner().invoke(app, ["datasets", "inspect", *args], env=env, catch_exceptions=False)


def test_cli_inspect_shows_pairs_with_masked_prompts_and_padding(client: httpx.Client, pairs_id: str):
    shown = inspect(client, pairs_id, "--count", "2", "--block-size", "24")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(f"train split of {pairs_id}: rows 0–1 of ") and "pairs packing" in lines[0]
    assert "[masked] (input only)" in lines[1]
    rows = [line for line in lines if line.startswith("[What is ")]
    assert len(rows) == 2
    for row in rows:
        i = int(row.removeprefix("[What is ").split(" ")[0])
        assert row.startswith(f"[What is {i} + {i}?] {2 * i}<|endoftext|>{{pad ×")
    assert "more: --start 2" in shown.output


def test_cli_inspect_marks_newlines_in_stream_rows(client: httpx.Client, stream_id: str):
    shown = inspect(client, stream_id, "--split", "val", "--count", "3", "--start", "1")
    assert shown.exit_code == 0, shown.output
    assert "rows 1–3 of" in shown.output and "stream packing, block_size 64" in shown.output
    body = json.loads(
        inspect(client, stream_id, "--split", "val", "--count", "3", "--start", "1", "--json").output
    )
    for row in body["rows"]:
        text = "".join(t["text"] for t in row["tokens"])
        drawn = "[" + text[0] + "]" + text[1:]
        assert drawn.replace("\n", "⏎") in shown.output


def test_cli_inspect_bad_input_exits_with_the_reason(client: httpx.Client, stream_id: str, small_id: str):
    unknown = inspect(client, "00000000deadbeef")
    assert unknown.exit_code == 1 and "not found" in unknown.output
    too_many = inspect(client, stream_id, "--count", "65")
    assert too_many.exit_code == 2 and "--count" in too_many.output
    split = inspect(client, stream_id, "--split", "test", "--json")
    assert split.exit_code == 1 and "split" in json.loads(split.output)["error"]["message"]
    block = inspect(client, small_id, "--block-size", "500")
    assert block.exit_code == 1 and "199 or less" in block.output
    past = inspect(client, small_id, "--start", "1000")
    assert past.exit_code == 0 and "no rows from 1,000 in the train split" in past.output


# -- rows and batches agree -------------------------------------------------------------------------


def all_rows(stub: pb_grpc.DataServiceStub, dataset_id: str, split: str, block: int) -> list[pb.Row]:
    rows: list[pb.Row] = []
    while True:
        page = get_rows(stub, dataset_id, split=split, start=len(rows), count=256, block_size=block)
        rows += page.rows
        if len(rows) >= page.total_rows:
            return rows


def batch_arrays(stub: pb_grpc.DataServiceStub, **kw: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for b in stub.StreamBatches(pb.StreamBatchesRequest(**kw)):
        shape = tuple(b.x.shape)
        out.append(
            (np.frombuffer(b.x.data, "<i8").reshape(shape), np.frombuffer(b.y.data, "<i8").reshape(shape))
        )
    return out


def test_stream_rows_train_exactly_the_targets_streamed_batches_train(
    stub: pb_grpc.DataServiceStub, stream_id: str
):
    """Every split position's role, read off GetRows, against the targets of batches drawn anywhere."""
    block, size, seed = 16, 8, 5
    rows = all_rows(stub, stream_id, "val", block)
    token: dict[int, int] = {}
    trained: dict[int, bool] = {}
    for row in rows:
        for j, t in enumerate(row.tokens):
            token[row.token_offset + j] = t.id
            if j:  # the first token of a row is another row's target
                trained[row.token_offset + j] = t.role == pb.TOKEN_ROLE_TRAINED
    n = len(token)
    args = {"dataset_id": stream_id, "split": "val", "batch_size": size, "block_size": block, "seed": seed}
    for step, (x, y) in enumerate(batch_arrays(stub, **args, num_steps=3)):
        starts = step_rng(seed, "val", step).integers(0, n - block, size=size)
        for i, s in enumerate(starts.tolist()):
            assert x[i].tolist() == [token[s + j] for j in range(block)]
            assert (y[i] != -1).tolist() == [trained[s + j + 1] for j in range(block)]


def test_pair_rows_train_exactly_the_targets_streamed_batches_train(
    stub: pb_grpc.DataServiceStub, pairs_id: str
):
    block, seed = 12, 9
    rows = all_rows(stub, pairs_id, "train", block)
    args = {"dataset_id": pairs_id, "split": "train", "batch_size": len(rows), "block_size": block}
    (x, y), *_ = batch_arrays(stub, **args, seed=seed, num_steps=1)
    for i, example in enumerate(EpochOrder(len(rows), seed, "train").take(0, len(rows)).tolist()):
        row = rows[example]
        assert x[i].tolist() == [t.id for t in row.tokens[:-1]]
        assert (y[i] != -1).tolist() == [t.role == pb.TOKEN_ROLE_TRAINED for t in row.tokens[1:]]


@pytest.mark.parametrize("packing", ["stream", "pairs"])
def test_a_chat_row_shows_user_text_masked_and_the_reply_trained(
    stub: pb_grpc.DataServiceStub, data_service: DataService, packing: str
) -> None:
    talks = [
        {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"yo {i}"}]}
        for i in range(30)
    ]
    path = data_service.settings.data_root / f"talks-{packing}.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in talks), encoding="utf-8")
    request = pb.PrepareDatasetRequest(module="chat", source=path.name, tokenizer="char", packing=packing)
    dataset_id = stub.PrepareDataset(request).dataset_id
    rows = stub.GetRows(pb.GetRowsRequest(dataset_id=dataset_id, split="train", count=4, block_size=32)).rows
    trained = "".join(t.text for r in rows for t in r.tokens if t.role == pb.TOKEN_ROLE_TRAINED)
    masked = "".join(t.text for r in rows for t in r.tokens if t.role == pb.TOKEN_ROLE_MASKED)
    assert "yo " in trained and "<|end|>" in trained  # the reply and its end of turn take loss
    assert "hi " not in trained and "<|user|>" not in trained  # the user's turn is input only
    assert "hi " in masked
