"""The data service over a real gRPC channel: a server from ``serve`` and a ``python -m data_service``."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from data_service.server import serve
from simtrain import batch_wire
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SERVICE = "simtrain.data.v1.DataService"
MESSAGE_LIMIT = 4 * 1024 * 1024
WORDS = "the a cat dog sat ran on under mat log while sun rose fell quietly and then again".split()


def make_text(num_sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    sentences = []
    for _ in range(num_sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
        sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
    return "\n".join(sentences) + "\n"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = tmp_path_factory.mktemp("data_service")
    root = base / "data"
    root.mkdir()
    (root / "story.txt").write_text(make_text(150), encoding="utf-8")
    (root / "tiny.txt").write_text("Just a few words.\n", encoding="utf-8")
    (root / "bad.txt").write_bytes(b"fine until \xff here")
    return Settings(
        data_root=root,
        state_dir=base / "state",
        data_service_host="127.0.0.1",
        grpc_max_message_bytes=MESSAGE_LIMIT,
    )


@pytest.fixture(scope="module")
def channel(settings: Settings) -> Iterator[grpc.Channel]:
    server, port = serve(settings, port=0)
    assert port > 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    server.stop(None)


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.DataServiceStub:
    return pb_grpc.DataServiceStub(channel)


@pytest.fixture(scope="module")
def dataset(stub: pb_grpc.DataServiceStub) -> pb.DatasetInfo:
    return stub.PrepareDataset(pb.PrepareDatasetRequest(module="text", source="story.txt", tokenizer="char"))


def stream(stub: pb_grpc.DataServiceStub, dataset_id: str, **kw) -> list[pb.Batch]:
    args = {"split": "train", "batch_size": 4, "block_size": 32, "seed": 3, "num_steps": 6} | kw
    return list(stub.StreamBatches(pb.StreamBatchesRequest(dataset_id=dataset_id, **args)))


def array(t: pb.Tensor) -> np.ndarray:
    assert t.dtype == "int64"
    return np.frombuffer(t.data, dtype="<i8").reshape(tuple(t.shape))


def error(call, request) -> grpc.RpcError:
    """The error a call ends with (for streams, after reading them to the end)."""
    with pytest.raises(grpc.RpcError) as info:
        response = call(request)
        if isinstance(response, Iterator):
            list(response)
    return info.value


def test_list_modules(stub: pb_grpc.DataServiceStub):
    modules = {m.name: m for m in stub.ListModules(pb.ListModulesRequest()).modules}
    assert "text" in modules
    assert modules["text"].description
    options = {o.name: o.default_value for o in modules["text"].options}
    assert options["val_fraction"] == "0.1"


def test_prepare_describes_the_dataset(dataset: pb.DatasetInfo, settings: Settings):
    text = (settings.data_root / "story.txt").read_text(encoding="utf-8")
    assert dataset.module == "text" and dataset.source == "story.txt"
    assert dataset.tokenizer == "char" and dataset.packing == "stream"
    assert dataset.vocab_size == len(set(text))
    splits = {s.name: s.num_tokens for s in dataset.splits}
    assert splits["train"] + splits["val"] == len(text)
    # val is whole paragraphs (of at most ~512 characters) chosen by hash, close to 10% of the text.
    assert 0.05 * len(text) < splits["val"] < 0.2 * len(text)
    stats = json.loads(dataset.stats_json)
    assert stats["num_tokens"] == splits and stats["vocab_size"] == dataset.vocab_size
    assert stats["train_val_overlap"] == 0 and stats["duplicate_examples"] == 0
    folder = settings.prepared_dir / dataset.dataset_id
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    train = np.fromfile(folder / "train.bin", dtype=np.uint16)
    assert len(train) == splits["train"]


def test_prepare_is_idempotent(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo, settings: Settings):
    folder = settings.prepared_dir / dataset.dataset_id
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    again = stub.PrepareDataset(pb.PrepareDatasetRequest(module="text", source="story.txt"))
    assert again == dataset
    # Spelling the defaults out is the same recipe, so the same id.
    spelled = stub.PrepareDataset(
        pb.PrepareDatasetRequest(
            module="text",
            source="story.txt",
            tokenizer="char",
            packing="stream",
            options={"val_fraction": "0.10"},
        )
    )
    assert spelled.dataset_id == dataset.dataset_id
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    assert not [p.name for p in settings.prepared_dir.iterdir() if p.name.startswith(".")], "temp left"


def test_other_options_give_another_dataset(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    other = stub.PrepareDataset(
        pb.PrepareDatasetRequest(module="text", source="story.txt", options={"val_fraction": "0.2"})
    )
    assert other.dataset_id != dataset.dataset_id
    assert {s.name: s.num_tokens for s in other.splits}["val"] > {
        s.name: s.num_tokens for s in dataset.splits
    }["val"]


def test_short_splits_say_what_they_can_serve(stub: pb_grpc.DataServiceStub):
    info = stub.PrepareDataset(pb.PrepareDatasetRequest(module="text", source="tiny.txt"))
    stats = json.loads(info.stats_json)
    assert stats["max_block_size"]["train"] == len("Just a few words.\n") - 1
    assert any(w.startswith("The val split is empty: the examples (1) all fall") for w in info.warnings)
    assert not any("block_size" in w for w in info.warnings)  # the trainer judges the job's own


def test_get_dataset(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    assert stub.GetDataset(pb.GetDatasetRequest(dataset_id=dataset.dataset_id)) == dataset


def test_batches_are_windows_of_the_split(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    batches = stream(stub, dataset.dataset_id, split="val", num_steps=3, start_step=10)
    assert [b.step for b in batches] == [10, 11, 12]
    for b in batches:
        x, y = array(b.x), array(b.y)
        assert x.shape == y.shape == (4, 32)
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        assert 0 <= x.min() and x.max() < dataset.vocab_size


def test_resume_from_start_step_repeats_the_run(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    whole = stream(stub, dataset.dataset_id, num_steps=6)
    tail = stream(stub, dataset.dataset_id, start_step=4, num_steps=2)
    assert [b.step for b in whole] == list(range(6))
    assert tail == whole[4:]
    assert stream(stub, dataset.dataset_id, num_steps=6) == whole
    assert stream(stub, dataset.dataset_id, num_steps=6, seed=4) != whole


def test_ranks_get_disjoint_shards(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    whole = stream(stub, dataset.dataset_id, batch_size=8, num_steps=2)
    shards = [stream(stub, dataset.dataset_id, rank=r, world_size=2, num_steps=2) for r in range(2)]
    assert not np.array_equal(array(shards[0][0].x), array(shards[1][0].x))
    for step in range(2):
        x = np.concatenate([array(shards[r][step].x) for r in range(2)])
        np.testing.assert_array_equal(x, array(whole[step].x))


def test_num_steps_zero_streams_until_cancelled(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    responses = stub.StreamBatches(
        pb.StreamBatchesRequest(dataset_id=dataset.dataset_id, split="train", batch_size=2, block_size=8)
    )
    steps = [next(responses).step for _ in range(50)]
    responses.cancel()
    assert steps == list(range(50))
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    assert info.value.code() == grpc.StatusCode.CANCELLED


def unpack(messages: list[pb.Batch]) -> list[tuple[int, bytes, bytes, int]]:
    """(step, x, y, vocab_size) per batch, read as the trainer reads them (messages of several split up)."""
    out = []
    for m in messages:
        b = batch_wire.decode(m.SerializeToString())
        out += [(b.step + i, b.x[i].tobytes(), b.y[i].tobytes(), b.vocab_size) for i in range(len(b))]
    return out


@pytest.mark.parametrize("split", ["train", "val"])
def test_several_batches_per_message_are_the_same_batches(
    stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo, split: str
):
    one = stream(stub, dataset.dataset_id, split=split, start_step=3, num_steps=7)
    packed = stream(stub, dataset.dataset_id, split=split, start_step=3, num_steps=7, batches_per_message=3)
    assert [(m.step, m.num_batches, list(m.x.shape)) for m in packed] == [
        (3, 3, [3, 4, 32]),
        (6, 3, [3, 4, 32]),
        (9, 0, [4, 32]),  # the last one left: a plain one-batch message
    ]
    assert unpack(packed) == unpack(one)
    # Resuming inside what was one message gives the same batches from there on.
    tail = stream(stub, dataset.dataset_id, split=split, start_step=5, num_steps=5, batches_per_message=4)
    assert unpack(tail) == unpack(one)[2:]
    # More than a message may hold is read as "as many as fit"; 0 and 1 mean one.
    assert stream(stub, dataset.dataset_id, num_steps=2, batches_per_message=1) == stream(
        stub, dataset.dataset_id, num_steps=2
    )
    assert len(stream(stub, dataset.dataset_id, num_steps=300, batches_per_message=10**6)) == 2


def test_encode_decode_round_trip(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    text = "The cat sat on the mat."
    tokens = stub.Encode(pb.EncodeRequest(dataset_id=dataset.dataset_id, text=text)).tokens
    assert len(tokens) == len(text)
    assert stub.Decode(pb.DecodeRequest(dataset_id=dataset.dataset_id, tokens=tokens)).text == text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"batch_size": 0}, "batch_size and block_size must be positive"),
        ({"block_size": -1}, "batch_size and block_size must be positive"),
        ({"split": "test"}, "split must be one of train, val, got 'test'"),
        ({"rank": 2, "world_size": 2}, "rank must be in [0, world_size), got rank 2 of 2"),
        ({"rank": -1}, "rank must be in [0, world_size)"),
        ({"start_step": -1}, "start_step and num_steps must not be negative"),
        ({"num_steps": -1}, "start_step and num_steps must not be negative"),
        ({"dataset_id": ""}, "dataset_id is empty"),
        ({"block_size": 100_000}, "block_size 100000 is too large for the train split"),
        ({"batch_size": 4096, "block_size": 256}, "over the message limit of 4194304"),
        ({"batches_per_message": -1}, "batches_per_message must not be negative, got -1"),
    ],
)
def test_stream_invalid_arguments(
    stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo, change: dict, expected: str
):
    args = {"dataset_id": dataset.dataset_id, "split": "train", "batch_size": 4, "block_size": 8} | change
    e = error(stub.StreamBatches, pb.StreamBatchesRequest(**args))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in e.details()


def test_a_split_too_small_or_empty_is_refused_saying_what_to_change(
    settings: Settings, stub: pb_grpc.DataServiceStub
):
    (settings.data_root / "copies.txt").write_text("One line, many times.\n\n" * 30, encoding="utf-8")
    copies = stub.PrepareDataset(pb.PrepareDatasetRequest(module="text", source="copies.txt"))
    tokens = {s.name: s.num_tokens for s in copies.splits}
    assert json.loads(copies.stats_json)["split_groups"] == 1
    args = {"dataset_id": copies.dataset_id, "batch_size": 2, "num_steps": 1}
    e = error(stub.StreamBatches, pb.StreamBatchesRequest(split="val", block_size=8, **args))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is empty: the examples (30) all fall in one split group" in e.details()
    assert "val_fraction cannot help" in e.details()
    big = tokens["train"] + 5
    e = error(stub.StreamBatches, pb.StreamBatchesRequest(split="train", block_size=big, **args))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"block_size {big} is too large" in e.details()
    assert f"use block_size {tokens['train'] - 1} or less, or prepare more data" in e.details()


@pytest.mark.parametrize(
    ("request_", "code", "expected"),
    [
        (
            {"module": "csv", "source": "story.txt"},
            "INVALID_ARGUMENT",
            "unknown module 'csv'; offered: add, alpaca, anki, chat, jsonl, lookup, mix, recall, sort, "
            "table, text",
        ),
        (
            {"module": "text", "source": "story.txt", "tokenizer": "wordpiece"},
            "INVALID_ARGUMENT",
            "supported: char, byte, bpe",
        ),
        ({"module": "text", "source": "story.txt", "packing": "padded"}, "INVALID_ARGUMENT", "'padded'"),
        (
            {"module": "text", "source": "story.txt", "options": {"lowercase": "1"}},
            "INVALID_ARGUMENT",
            "lowercase",
        ),
        (
            {"module": "text", "source": "story.txt", "options": {"val_fraction": "1.5"}},
            "INVALID_ARGUMENT",
            "1.5",
        ),
        ({"module": "text", "source": "nope.txt"}, "NOT_FOUND", "source 'nope.txt' not found"),
        ({"module": "text", "source": "../story.txt"}, "INVALID_ARGUMENT", "'../story.txt' is outside"),
        ({"module": "text", "source": "/etc/hostname"}, "INVALID_ARGUMENT", "'/etc/hostname' is an absolute"),
        (
            {"module": "text", "source": "bad.txt"},
            "INVALID_ARGUMENT",
            "bad.txt is not valid UTF-8: byte 0xff",  # not /tmp/.../data/bad.txt
        ),
    ],
)
def test_prepare_errors(
    stub: pb_grpc.DataServiceStub, settings: Settings, request_: dict, code: str, expected: str
):
    e = error(stub.PrepareDataset, pb.PrepareDatasetRequest(**request_))
    assert e.code() == grpc.StatusCode[code]
    assert expected in e.details()
    # Files are named as the client names them; where the server keeps them is its own business.
    assert str(settings.data_root) not in e.details() and "PrepareDataset" not in e.details()


def test_unknown_dataset_is_not_found(stub: pb_grpc.DataServiceStub):
    missing = "0123456789abcdef"
    for call, request in [
        (stub.GetDataset, pb.GetDatasetRequest(dataset_id=missing)),
        (stub.Encode, pb.EncodeRequest(dataset_id=missing, text="a")),
        (stub.Decode, pb.DecodeRequest(dataset_id=missing, tokens=[0])),
        (
            stub.StreamBatches,
            pb.StreamBatchesRequest(dataset_id=missing, split="train", batch_size=1, block_size=1),
        ),
        (stub.GetDataset, pb.GetDatasetRequest(dataset_id="../../etc")),
    ]:
        e = error(call, request)
        assert e.code() == grpc.StatusCode.NOT_FOUND
        assert "not found" in e.details() and request.dataset_id in e.details()


def test_encode_decode_errors(stub: pb_grpc.DataServiceStub, dataset: pb.DatasetInfo):
    e = error(stub.Encode, pb.EncodeRequest(dataset_id=dataset.dataset_id, text="naïve"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "'ï'" in e.details()
    e = error(stub.Decode, pb.DecodeRequest(dataset_id=dataset.dataset_id, tokens=[0, 9999]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "9999" in e.details()


def test_unexpected_failure_is_internal_with_the_reason(stub: pb_grpc.DataServiceStub, settings: Settings):
    broken = settings.prepared_dir / "fedcba9876543210"
    broken.mkdir(parents=True)
    (broken / "meta.json").write_text("{not json", encoding="utf-8")
    e = error(stub.GetDataset, pb.GetDatasetRequest(dataset_id=broken.name))
    assert e.code() == grpc.StatusCode.INTERNAL
    assert "the data service failed (JSONDecodeError" in e.details() and "GetDataset" not in e.details()
    assert str(settings.state_dir) not in e.details()
    # Listing skips the broken one rather than failing for all.
    listed = stub.ListDatasets(pb.ListDatasetsRequest()).datasets
    assert broken.name not in {d.dataset_id for d in listed} and listed


def test_health_is_serving(channel: grpc.Channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel: grpc.Channel):
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert SERVICE in services
    assert "grpc.health.v1.Health" in services


def test_python_m_data_service_serves_and_stops_on_sigterm(settings: Settings):
    env = os.environ | {
        "SIMTRAIN_DATA_SERVICE_HOST": "127.0.0.1",
        "SIMTRAIN_DATA_SERVICE_PORT": "0",
        "SIMTRAIN_DATA_ROOT": str(settings.data_root),
        "SIMTRAIN_STATE_DIR": str(settings.state_dir),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "data_service"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        line = child.stdout.readline().strip()
        assert line.startswith("data_service listening on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
