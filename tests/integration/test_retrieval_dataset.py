"""A retrieval-augmented pairs dataset through the real data service: prepared over gRPC, its rows read
back with GetRows (the retrieved context masked, the answer trained), and a bad option refused."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from data_service.server import serve
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.settings import Settings
from tests.retrieval_facts import facts, write_pairs, write_passages

N = 40
ANSWERS = {prompt: answer for prompt, answer, _ in facts(N)}
PASSAGES = {prompt: passage for prompt, _, passage in facts(N)}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = tmp_path_factory.mktemp("retrieval")
    root = base / "data"
    (root / "library").mkdir(parents=True)
    write_pairs(root / "qa.jsonl", N)
    write_passages(root / "library" / "facts.md", N)
    return Settings(data_root=root, state_dir=base / "state", data_service_host="127.0.0.1")


@pytest.fixture(scope="module")
def stub(settings: Settings) -> Iterator[pb_grpc.DataServiceStub]:
    server, port = serve(settings, port=0)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.DataServiceStub(channel)
    server.stop(None)


def prepare(stub: pb_grpc.DataServiceStub, **options: str) -> pb.DatasetInfo:
    request = pb.PrepareDatasetRequest(
        module="jsonl", source="qa.jsonl", tokenizer="char", packing="pairs", options=options
    )
    return stub.PrepareDataset(request)


def test_rows_read_back_with_the_context_masked(stub: pb_grpc.DataServiceStub):
    info = prepare(stub, retrieval_corpus="library", retrieve_k="1")
    stats = json.loads(info.stats_json)["retrieval"]
    assert stats["corpus"] == "library" and stats["passages"] == N
    assert stats["supported"] == stats["examples"]
    response = stub.GetRows(
        pb.GetRowsRequest(dataset_id=info.dataset_id, split="train", start=0, count=8, block_size=256)
    )
    assert response.total_rows == stats["examples"]["train"] and len(response.rows) == 8
    for row in response.rows:
        masked = "".join(t.text for t in row.tokens if t.role == pb.TOKEN_ROLE_MASKED)
        trained = "".join(t.text for t in row.tokens if t.role == pb.TOKEN_ROLE_TRAINED)
        context, _, prompt = masked.partition("\n===\n")
        assert context == PASSAGES[prompt]
        assert trained == ANSWERS[prompt] + "<|endoftext|>"


def test_the_same_request_is_the_same_dataset(stub: pb_grpc.DataServiceStub):
    first = prepare(stub, retrieval_corpus="library")
    assert prepare(stub, retrieval_corpus="library/", retrieve_k="3").dataset_id == first.dataset_id
    assert prepare(stub).dataset_id != first.dataset_id


def test_a_bad_retrieval_option_is_refused_by_name(stub: pb_grpc.DataServiceStub):
    with pytest.raises(grpc.RpcError) as info:
        prepare(stub, retrieval_corpus="library", retriever="dense")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "option retriever must be one of bm25" in info.value.details()
    problems = stub.CheckDataset(
        pb.PrepareDatasetRequest(module="jsonl", source="qa.jsonl", options={"retrieval_corpus": "library"})
    ).problems
    assert [(p.field, "needs packing 'pairs'" in p.message) for p in problems] == [("options", True)]


def test_the_index_is_kept_in_the_dataset_folder(stub: pb_grpc.DataServiceStub, settings: Settings):
    info = prepare(stub, retrieval_corpus="library", retrieve_k="2")
    folder = settings.prepared_dir / info.dataset_id / "retrieval"
    assert (folder / "bm25" / "vocab.index.json").is_file()
    assert (folder / "passages.txt").read_text(encoding="utf-8").count("lighthouse") == N
    assert not [p.name for p in settings.prepared_dir.iterdir() if p.name.startswith(".")], "temp left"


def test_retrieve_gives_a_prompt_of_ones_own_the_context_its_row_has(stub: pb_grpc.DataServiceStub):
    info = prepare(stub, retrieval_corpus="library", retrieve_k="1")
    rows = stub.GetRows(
        pb.GetRowsRequest(dataset_id=info.dataset_id, split="train", start=0, count=4, block_size=256)
    ).rows
    prompts, heads = [], []
    for row in rows:
        text = "".join(t.text for t in row.tokens)
        head_chars = text.index("\n===\n") + len("\n===\n")  # char tokenizer: one token per character
        heads.append([t.id for t in row.tokens[:head_chars]])
        prompts.append(text[head_chars:].split("?")[0] + "?")
    found = stub.Retrieve(pb.RetrieveRequest(dataset_id=info.dataset_id, prompts=[*prompts, "Nothing here"]))
    assert [list(c.tokens) for c in found.contexts[:-1]] == heads
    assert [c.text for c in found.contexts[:-1]] == [PASSAGES[p] for p in prompts]
    assert [c.passages for c in found.contexts] == [1, 1, 1, 1, 0]
    nothing = found.contexts[-1]
    assert nothing.text == "" and len(nothing.tokens) == len("\n===\n")  # the marker alone


def test_retrieve_refuses_what_it_cannot_answer(stub: pb_grpc.DataServiceStub):
    def refused(dataset_id: str, prompts: list[str]) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            stub.Retrieve(pb.RetrieveRequest(dataset_id=dataset_id, prompts=prompts))
        return info.value

    with_corpus = prepare(stub, retrieval_corpus="library").dataset_id
    e = refused(with_corpus, [])
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "prompts: give 1 to 256, got 0" in e.details()
    e = refused(with_corpus, ["q"] * 257)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "got 257" in e.details()
    e = refused(prepare(stub).dataset_id, ["Who keeps the lighthouse on isle 1?"])
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "prepared without a retrieval corpus" in e.details()
    assert refused("0123456789abcdef", ["q"]).code() == grpc.StatusCode.NOT_FOUND
