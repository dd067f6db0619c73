"""Hostile input refused with a clear error, end to end.

Module-level refusals have their own unit tests (``..`` and absolute sources, symlinks out of the root and
out of a directory source in test_text_module; zip and zstd bombs and oversized members in
test_anki_module; invalid UTF-8 in the text, jsonl and prepare tests). Here: the same refusals through the
gRPC surface a client sees, a JSONL line too long to hold, and job specs over the memory limits, refused at
submit (422 naming the field) and again by the worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from data_service.modules import jsonl
from data_service.server import serve as serve_data
from gateway.app import create_app
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.jobs import JobSpec, JobStatus
from simtrain.limits import activation_bytes, model_params
from simtrain.queue import GROUP, JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import error_of, serve
from trainer_service.worker import Worker

GPT_NANO = {"dataset": {"module": "text", "source": "tiny.txt"}, "model": {"model_type": "gpt-nano"}}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    root = base / "data"
    root.mkdir()
    (base / "secret.txt").write_text("outside the data root\n")
    (root / "link.txt").symlink_to(base / "secret.txt")
    (root / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (root / "fine.txt").write_text("a story.\n" * 50)
    # One JSON line longer than the module holds in memory: refused, not read whole.
    with (root / "huge.jsonl").open("w") as f:
        f.write('{"text": "' + "x" * (jsonl.MAX_LINE_CHARS + 10) + '"}\n')
    return root


@pytest.fixture(scope="module")
def data_address(data_root: Path) -> Iterator[str]:
    server, port = serve_data(Settings(data_root=data_root, state_dir=data_root.parent / "var"), port=0)
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture(scope="module")
def stub(data_address: str) -> Iterator[pb_grpc.DataServiceStub]:
    with grpc.insecure_channel(data_address) as channel:
        yield pb_grpc.DataServiceStub(channel)


@pytest.mark.parametrize(
    ("module", "source", "message"),
    [
        ("text", "../secret.txt", "source '../secret.txt' is outside the data root: '..' climbs out of it"),
        ("text", "/etc/passwd", "source '/etc/passwd' is an absolute path"),
        ("text", "link.txt", "source 'link.txt' is outside the data root: a symbolic link leads out of it"),
        ("text", "fine\0.txt", "contains a NUL character"),
        ("text", "latin1.txt", "latin1.txt is not valid UTF-8: byte 0xe9 at offset 3"),
        (
            "jsonl",
            "huge.jsonl",
            f"huge.jsonl: line 1 is over {jsonl.MAX_LINE_CHARS:,} characters long; refused",
        ),
        ("anki", "fine.txt", "fine.txt is not a valid .apkg file"),
    ],
)
def test_hostile_sources_are_refused_over_grpc(stub, module: str, source: str, message: str):
    with pytest.raises(grpc.RpcError) as refused:
        stub.PrepareDataset(pb.PrepareDatasetRequest(module=module, source=source), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details()


# -- submit-time checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "field", "words"),
    [
        ({"module": "nope", "source": "fine.txt"}, "dataset.module", "unknown module 'nope'; offered: "),
        ({"module": "text", "source": "fine.txt", "tokenizer": "nope"}, "dataset.tokenizer", "nope"),
        ({"module": "text", "source": "missing.txt"}, "dataset.source", "'missing.txt' not found"),
        ({"module": "text", "source": "../secret.txt"}, "dataset.source", "outside the data root"),
        ({"module": "text", "source": "fine.txt", "packing": "zigzag"}, "dataset.packing", "zigzag"),
        ({"module": "text", "source": "fine.txt", "options": {"colour": 1}}, "dataset.options", "colour"),
    ],
)
def test_a_dataset_the_data_service_refuses_is_a_422_at_submit(
    data_address: str, redis_url: str, key_prefix: str, job_queue: JobQueue, dataset, field, words
):
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix, data_service_addr=data_address)
    with serve(create_app(settings)) as client:
        error = error_of(client.post("/v1/jobs", json=GPT_NANO | {"dataset": dataset}), 422)
        assert [(d["field"], d["type"]) for d in error["details"]] == [(field, "dataset_refused")]
        assert words in error["details"][0]["message"] and field in error["message"]
        fine = GPT_NANO | {"dataset": {"module": "text", "source": "fine.txt"}}
        assert client.post("/v1/jobs", json=fine).status_code == 202
    assert len(job_queue.list()[0]) == 1  # the refused one was never queued


def test_a_dataset_is_accepted_where_it_cannot_be_checked(
    data_address: str, redis_url: str, key_prefix: str, job_queue: JobQueue
):
    """No data service to ask, or the job names another: its trainer checks the dataset, and fails the job."""
    unknown = GPT_NANO | {"dataset": {"module": "nope", "source": "missing.txt"}}
    down = Settings(redis_url=redis_url, key_prefix=key_prefix, data_service_addr="127.0.0.1:1")
    with serve(create_app(down)) as client:
        assert client.post("/v1/jobs", json=unknown).status_code == 202
    up = down.model_copy(update={"data_service_addr": data_address})
    with serve(create_app(up)) as client:
        assert client.post("/v1/jobs", json=unknown | {"data_service": "127.0.0.1:1"}).status_code == 202
        assert client.post("/v1/jobs", json=unknown).status_code == 422
    assert len(job_queue.list()[0]) == 2


# -- memory limits ------------------------------------------------------------------------------------


def test_the_estimates_match_the_model():
    from trainer_service.model import GPT, GPTConfig

    model = GPT(GPTConfig(n_layer=3, n_head=3, n_embd=48, vocab_size=1, block_size=64))
    # All but the token embedding (one row here): the figure limits are checked against before a vocabulary.
    assert model_params(3, 48, 64) == model.num_params() - 48
    assert activation_bytes(1, 1, 8, 1, 4) == 2 * (4 * 8 * 34 + 5 * 16)


@pytest.fixture
def limited(redis_url: str, key_prefix: str) -> Settings:
    return Settings(
        redis_url=redis_url, key_prefix=key_prefix, max_model_params=1_000_000, max_activation_bytes=4 << 30
    )


def test_a_spec_over_the_limits_is_a_422_naming_the_field(limited: Settings, job_queue: JobQueue):
    with serve(create_app(limited)) as client:
        big_model = client.post("/v1/jobs", json=GPT_NANO | {"model": {"model_type": "gpt2"}})
        error = error_of(big_model, 422)
        assert [d["field"] for d in error["details"]] == ["model.model_type"]
        assert "SIMTRAIN_MAX_MODEL_PARAMS" in error["message"]

        sizes = {"n_layer": 96, "n_head": 2, "n_embd": 32}
        huge_steps = GPT_NANO | {"model": sizes, "training": {"batch_size": 4096, "block_size": 4096}}
        error = error_of(client.post("/v1/jobs", json=huge_steps), 422)
        assert [d["field"] for d in error["details"]] == ["model.n_embd", "training.block_size"]
        assert "lower block_size or batch_size" in error["details"][1]["message"]

        assert client.post("/v1/jobs", json=GPT_NANO).status_code == 202
    assert len(job_queue.list()[0]) == 1  # the refused ones were never queued


def test_the_worker_refuses_a_spec_over_its_limits(limited: Settings):
    """A job put on the queue by another client (not through the gateway) meets the same limits."""
    queue = JobQueue.from_url(limited.redis_url, prefix=limited.key_prefix)
    queue.ensure_group()
    job = queue.submit(
        JobSpec.model_validate(GPT_NANO | {"training": {"batch_size": 4096, "block_size": 4096}})
    )
    started = time.monotonic()
    assert Worker(limited.model_copy(update={"worker_name": "w"}), queue).work_one(block_ms=100)
    record = queue.get(job.id)
    assert record.status == JobStatus.failed
    assert record.error.startswith(
        "refused: training.block_size: a step of batch_size 4096 x block_size 4096"
    )
    assert time.monotonic() - started < 5  # refused up front, nothing built


# -- unreadable records -------------------------------------------------------------------------------

# A spec stored before NaN and Infinity were refused: the JSON holds null where a number is required.
NULL_CLIP = '{"dataset": {"module": "text", "source": "tiny.txt"}, "training": {"grad_norm_clip": null}}'


def put_record(queue: JobQueue, job_id: str, spec: str) -> None:
    """A job record as another client (or an older version) wrote it, on the stream for workers."""
    fields = {"id": job_id, "status": "queued", "spec": spec, "max_iters": "300", "created_at": "1.5"}
    queue.r.hset(f"{queue.prefix}job:{job_id}", mapping=fields)
    queue.r.xadd(queue.stream, {"id": job_id})


def test_the_worker_fails_an_unreadable_record_and_goes_on(limited: Settings, job_queue: JobQueue):
    queue = JobQueue.from_url(limited.redis_url, prefix=limited.key_prefix)
    put_record(queue, "a1", NULL_CLIP)
    put_record(queue, "b2", "{not json")
    worker = Worker(limited.model_copy(update={"worker_name": "w"}), queue)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while queue.r.hget(f"{queue.prefix}job:b2", "status") != "failed":
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        assert thread.is_alive()
    finally:
        worker.stop()
        thread.join(timeout=10)
    first, second = (queue.r.hgetall(f"{queue.prefix}job:{i}") for i in ("a1", "b2"))
    assert first["status"] == "failed" and "grad_norm_clip: Input should be a valid number" in first["error"]
    assert first["error"].startswith("the job record cannot be read: JobSpec training.grad_norm_clip")
    assert "Invalid JSON" in second["error"]
    assert queue.r.xpending(queue.stream, GROUP)["pending"] == 0
