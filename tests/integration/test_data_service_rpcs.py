"""The data service over real gRPC: uploads, listing, every module, pairs batches, refusals, backpressure."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from data_service.server import DataServiceServicer, serve_with_servicer
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.jobs import DatasetSpec
from simtrain.settings import Settings
from tests.anki_decks import EXPECTED_PAIRS, anki_deck
from trainer_service.data_client import DataClient

UPLOAD_LIMIT = 1 << 20


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[pb_grpc.DataServiceStub, DataServiceServicer, Settings, int]]:
    base = tmp_path_factory.mktemp("rpcs")
    (base / "data").mkdir()
    settings = Settings(data_root=base / "data", state_dir=base / "state", data_service_host="127.0.0.1")
    server, port, servicer = serve_with_servicer(settings, port=0, upload_limit_bytes=UPLOAD_LIMIT)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.DataServiceStub(channel), servicer, settings, port
    channel.close()
    server.stop(None)


@pytest.fixture(scope="module")
def stub(service) -> pb_grpc.DataServiceStub:
    return service[0]


def upload(stub: pb_grpc.DataServiceStub, name: str, data: bytes, chunk: int = 4096) -> pb.UploadResult:
    def chunks() -> Iterator[pb.UploadChunk]:
        for i, at in enumerate(range(0, max(len(data), 1), chunk)):
            yield pb.UploadChunk(filename=name if i == 0 else "", data=data[at : at + chunk])

    return stub.UploadSource(chunks())


def rpc_error(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args)
        if isinstance(result, Iterator):
            list(result)
    return info.value


def array(t: pb.Tensor) -> np.ndarray:
    return np.frombuffer(t.data, dtype="<i8").reshape(tuple(t.shape))


def test_upload_then_prepare_and_list(stub: pb_grpc.DataServiceStub, service):
    data = ("Upload me, please.\n\n" * 300).encode()
    result = upload(stub, "../../My Notes.txt", data)
    assert result.source == "My_Notes.txt"
    assert result.size_bytes == len(data)
    assert (service[2].data_root / result.source).read_bytes() == data
    info = stub.PrepareDataset(pb.PrepareDatasetRequest(module="text", source=result.source))
    listed = stub.ListDatasets(pb.ListDatasetsRequest()).datasets
    assert info in listed


def test_an_upload_keeps_the_letters_of_its_name(stub: pb_grpc.DataServiceStub, tmp_path: Path):
    deck = anki_deck(tmp_path / "deck.apkg", legacy=False).read_bytes()
    source = upload(stub, "Geschäftsprozess.apkg", deck).source
    assert source == "Geschäftsprozess.apkg"
    assert source in {s.name for s in stub.ListSources(pb.ListSourcesRequest()).sources}
    info = stub.PrepareDataset(pb.PrepareDatasetRequest(module="anki", source=source, packing="pairs"))
    assert info.source == "Geschäftsprozess.apkg"


def test_list_sources_lists_the_uploads_and_nothing_else(tmp_path: Path):
    """Sorted by name, with size and time; not prepared datasets (here kept under the data root too),
    an upload still being written, a folder or a link."""
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(data_root=data, state_dir=data / "state", data_service_host="127.0.0.1")
    server, port, _ = serve_with_servicer(settings, port=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DataServiceStub(channel)
            assert list(stub.ListSources(pb.ListSourcesRequest()).sources) == []
            before = time.time()
            upload(stub, "zebra notes.txt", b"stripes\n" * 500)
            upload(stub, "apple.txt", b"An apple a day.\n" * 300)
            after = time.time()
            prepared = stub.PrepareDataset(pb.PrepareDatasetRequest(module="text", source="apple.txt"))
            assert (settings.prepared_dir / prepared.dataset_id / "meta.json").is_file()
            (data / ".upload-half").write_bytes(b"half")
            (data / "folder").mkdir()
            (data / "folder" / "inner.txt").write_bytes(b"inner")
            (tmp_path / "outside.txt").write_bytes(b"outside")
            (data / "link.txt").symlink_to(tmp_path / "outside.txt")
            listed = stub.ListSources(pb.ListSourcesRequest()).sources
    finally:
        server.stop(None)
    assert [(s.name, s.size_bytes) for s in listed] == [("apple.txt", 16 * 300), ("zebra_notes.txt", 8 * 500)]
    for source in listed:
        assert before - 1 <= source.uploaded_at.ToNanoseconds() / 1e9 <= after + 1


def test_upload_over_the_limit_is_refused(stub: pb_grpc.DataServiceStub, service):
    e = rpc_error(upload, stub, "huge.txt", b"x" * (UPLOAD_LIMIT + 1), 256 * 1024)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"larger than the limit of {UPLOAD_LIMIT} bytes" in e.details()
    assert not [p for p in service[2].data_root.iterdir() if "huge" in p.name or p.name.startswith(".")]


def test_anki_deck_uploaded_prepared_and_streamed_as_pairs(stub: pb_grpc.DataServiceStub, tmp_path: Path):
    deck = anki_deck(tmp_path / "deck.apkg", legacy=False).read_bytes()
    source = upload(stub, "deck.apkg", deck).source
    info = stub.PrepareDataset(
        pb.PrepareDatasetRequest(
            module="anki", source=source, packing="pairs", options={"val_fraction": "0.2"}
        )
    )
    stats = json.loads(info.stats_json)
    assert stats["module"]["media_only_fields"] == 2
    assert any("only media" in w for w in info.warnings)
    assert sum(s.num_examples for s in info.splits) == len(EXPECTED_PAIRS)
    request = pb.StreamBatchesRequest(dataset_id=info.dataset_id, split="train", batch_size=2, block_size=64)
    request.num_steps = 3
    seen = set()
    for batch in stub.StreamBatches(request):
        x, y = array(batch.x), array(batch.y)
        assert batch.vocab_size == info.vocab_size
        for row_x, row_y in zip(x, y, strict=True):
            first = int(np.argmax(row_y != -1))  # the prompt ends where targets start
            prompt = stub.Decode(pb.DecodeRequest(dataset_id=info.dataset_id, tokens=row_x[: first + 1])).text
            answer_ids = row_y[row_y != -1]
            answer = stub.Decode(pb.DecodeRequest(dataset_id=info.dataset_id, tokens=answer_ids)).text
            assert answer.endswith("<|endoftext|>")
            seen.add((prompt, answer.removesuffix("<|endoftext|>")))
    assert seen <= set(EXPECTED_PAIRS) and len(seen) >= 3


def test_jsonl_pairs_also_stream_as_windows(stub: pb_grpc.DataServiceStub):
    lines = "".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n" for i in range(200))
    source = upload(stub, "sums.jsonl", lines.encode()).source
    info = stub.PrepareDataset(pb.PrepareDatasetRequest(module="jsonl", source=source, packing="stream"))
    request = pb.StreamBatchesRequest(
        dataset_id=info.dataset_id, split="train", batch_size=3, block_size=16, num_steps=2
    )
    for batch in stub.StreamBatches(request):
        x, y = array(batch.x), array(batch.y)
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_bad_sources_are_invalid_argument_with_the_reason(stub: pb_grpc.DataServiceStub):
    bad_jsonl = upload(stub, "bad.jsonl", b'{"text": "ok"}\n{oops\n').source
    corrupt = upload(stub, "broken.apkg", b"PK\x03\x04 this is not really a zip").source
    empty = upload(stub, "blank.txt", b"   \n").source
    cases = [
        (
            pb.PrepareDatasetRequest(module="jsonl", source=bad_jsonl),
            "has 1 bad line(s): line 2: not valid JSON",
        ),
        (pb.PrepareDatasetRequest(module="anki", source=corrupt), "broken.apkg is not a valid .apkg file"),
        (pb.PrepareDatasetRequest(module="text", source=empty), "blank.txt holds only whitespace"),
        (
            pb.PrepareDatasetRequest(module="sort", source="s", options={"length": "-3"}),
            "option length must be",
        ),
    ]
    for request, message in cases:
        e = rpc_error(stub.PrepareDataset, request)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert message in e.details()


def test_failed_preconditions(stub: pb_grpc.DataServiceStub):
    info = stub.PrepareDataset(
        pb.PrepareDatasetRequest(
            module="add", source="add", packing="pairs", options={"num_examples": "300", "overlong": "reject"}
        )
    )
    ok = pb.StreamBatchesRequest(
        dataset_id=info.dataset_id, split="train", batch_size=2, block_size=16, num_steps=1
    )
    assert len(list(stub.StreamBatches(ok))) == 1
    short = pb.StreamBatchesRequest(dataset_id=info.dataset_id, split="train", batch_size=2, block_size=4)
    e = rpc_error(stub.StreamBatches, short)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "longer than block_size 4 + 1" in e.details() and "overlong is 'reject'" in e.details()

    no_val = stub.PrepareDataset(
        pb.PrepareDatasetRequest(module="sort", source="s", packing="pairs", options={"val_fraction": "0"})
    )
    e = rpc_error(
        stub.StreamBatches,
        pb.StreamBatchesRequest(dataset_id=no_val.dataset_id, split="val", batch_size=2, block_size=8),
    )
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "has no examples" in e.details()


def test_pairs_epoch_has_no_repeats_over_grpc(stub: pb_grpc.DataServiceStub):
    info = stub.PrepareDataset(
        pb.PrepareDatasetRequest(
            module="add", source="add", packing="pairs", options={"num_examples": "200", "digits": "3"}
        )
    )
    n_train = {s.name: s.num_examples for s in info.splits}["train"]
    request = pb.StreamBatchesRequest(
        dataset_id=info.dataset_id, split="train", batch_size=n_train // 4, block_size=12, num_steps=4
    )
    rows = [tuple(r) for b in stub.StreamBatches(request) for r in array(b.x)]
    # The draws are 200 sums of random 3-digit numbers: distinct rows unless the data repeats.
    assert len(set(rows)) == len(rows) == 4 * (n_train // 4)


def test_the_trainers_client_reads_our_batches(service):
    stub, _, _, port = service
    client = DataClient(f"127.0.0.1:{port}")
    try:
        info = client.prepare(DatasetSpec(module="sort", source="sort", packing="pairs"))
        batches = list(client.batches(info.dataset_id, "train", 4, 8, seed=0, start_step=5, num_steps=3))
        assert len(batches) == 3
        x, y = batches[0]
        assert x.shape == (4, 8) and (y == -1).any() and int(x.max()) < info.vocab_size
        assert client.decode(info.dataset_id, x[0, :7].tolist()).endswith("=")
    finally:
        client.close()


def test_the_client_reads_several_batches_per_message_as_the_same_batches(service):
    """Pairs packing too: the trainer gets identical tensors however many batches a message holds."""
    stub, servicer, _, port = service
    client = DataClient(f"127.0.0.1:{port}")
    try:
        info = client.prepare(DatasetSpec(module="sort", source="sort", packing="pairs"))

        def read(per_message: int, start: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
            batches = client.batches(
                info.dataset_id, "train", 4, 8, 1, start, 9 - start, per_message=per_message
            )
            return [(x.numpy().copy(), y.numpy().copy()) for x, y in batches]

        one = read(1)
        before = servicer.batches_made
        packed = read(4)
        assert servicer.batches_made - before == 9  # no batch made beyond the 9 asked for
        assert len(packed) == 9 and all(
            np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            for a, b in zip(one, packed, strict=True)
        )
        resumed = read(4, start=6)
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(one[6:], resumed, strict=True))
    finally:
        client.close()


def test_slow_client_holds_the_stream_back(service):
    stub, servicer, _, _ = service
    text = ("the quick brown fox jumps over the lazy dog\n" * 2000).encode()
    info = stub.PrepareDataset(
        pb.PrepareDatasetRequest(module="text", source=upload(stub, "fox.txt", text).source)
    )
    request = pb.StreamBatchesRequest(
        dataset_id=info.dataset_id, split="train", batch_size=16, block_size=1024
    )
    before = servicer.batches_made
    stream = stub.StreamBatches(request)  # endless: num_steps 0
    next(stream)
    time.sleep(0.5)
    made = servicer.batches_made - before
    time.sleep(0.5)
    assert servicer.batches_made - before == made, "the server kept making batches nobody read"
    assert made < 200  # each is 256 KiB: a bounded amount sits in flow-control windows
    stream.cancel()


def test_list_modules_says_whose_source_is_a_label(stub: pb_grpc.DataServiceStub):
    modules = {m.name: m for m in stub.ListModules(pb.ListModulesRequest()).modules}
    assert modules["sort"].source_is_label and modules["add"].source_is_label
    assert not any(modules[name].source_is_label for name in ("text", "jsonl", "anki"))


def test_get_tokenizer_gives_the_pairs_tokenizer_with_its_end_token(stub: pb_grpc.DataServiceStub, service):
    lines = "".join(json.dumps({"prompt": f"{i}*2=", "completion": str(2 * i)}) + "\n" for i in range(100))
    source = upload(stub, "doubles.jsonl", lines.encode()).source
    info = stub.PrepareDataset(
        pb.PrepareDatasetRequest(module="jsonl", source=source, tokenizer="bpe", packing="pairs")
    )
    definition = stub.GetTokenizer(pb.GetTokenizerRequest(dataset_id=info.dataset_id))
    assert definition.kind == "bpe"
    state = json.loads(definition.state_json)
    assert state["specials"] == ["<|endoftext|>"]
    # The trainer's client hands it on as data, exactly what the checkpoints keep.
    client = DataClient(f"127.0.0.1:{service[3]}")
    try:
        assert client.tokenizer(info.dataset_id) == {"kind": "bpe", "state": state}
    finally:
        client.close()
    missing = rpc_error(stub.GetTokenizer, pb.GetTokenizerRequest(dataset_id="00000000deadbeef"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and missing.details()
