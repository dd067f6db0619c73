"""A chat dataset through the real data service: prepared over gRPC, streamed as the trainer streams it
(bytes and /dev/shm), every target is -1 exactly where it is not part of an assistant reply."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import numpy as np
import pytest

from data_service.chat_template import ASSISTANT, MARKERS
from data_service.server import serve
from simtrain import shm
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.jobs import DatasetSpec
from simtrain.settings import Settings
from trainer_service.data_client import DataClient

WORDS = "sun moon rain snow wind tree river stone bird fish".split()


def conversations(n: int) -> list[dict]:
    """Multi-turn conversations in both shapes, some with a system prompt."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        turns = [("user", "assistant")[t % 2] for t in range(rng.choice([2, 4, 6]))]
        said = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in turns]
        if i % 2:
            sharegpt = {"user": "human", "assistant": "gpt"}
            out.append(
                {
                    "conversations": [
                        {"from": sharegpt[r], "value": s} for r, s in zip(turns, said, strict=True)
                    ]
                }
            )
        else:
            system = [{"role": "system", "content": "answer in nature words"}] if i % 4 == 0 else []
            out.append(
                {"messages": system + [{"role": r, "content": s} for r, s in zip(turns, said, strict=True)]}
            )
    return out


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    base = tmp_path_factory.mktemp("chat")
    (base / "data").mkdir()
    lines = "".join(json.dumps(c) + "\n" for c in conversations(120))
    (base / "data" / "talks.jsonl").write_text(lines, encoding="utf-8")
    settings = Settings(data_root=base / "data", state_dir=base / "state", data_service_host="127.0.0.1")
    server, port = serve(settings, port=0)
    yield port
    server.stop(None)


def expected_trained(x: np.ndarray, markers: dict[int, str]) -> list[bool | None]:
    """Per target position t of a row (target x[t + 1]): whether it belongs to an assistant reply, by the
    last marker at or before t; None where the window starts after no marker (unknown)."""
    out: list[bool | None] = []
    last: str | None = None
    for t in range(len(x) - 1):
        last = markers.get(int(x[t]), last)
        out.append(None if last is None else last == ASSISTANT)
    return out


def check_rows(x: np.ndarray, y: np.ndarray, markers: dict[int, str]) -> tuple[int, int]:
    """Assert each row's targets against the template; return (trained, masked) positions checked."""
    trained = masked = 0
    for xs, ys in zip(x, y, strict=True):
        for t, want in enumerate(expected_trained(xs, markers)):
            if want is None:
                continue
            assert (ys[t] != -1) == want, (t, xs.tolist(), ys.tolist())
            if want:
                assert ys[t] == xs[t + 1]
            trained += want
            masked += not want
    return trained, masked


@pytest.mark.parametrize("use_shm", [False, True])
@pytest.mark.parametrize(("tokenizer", "packing"), [("char", "stream"), ("bpe", "stream"), ("char", "pairs")])
def test_streamed_targets_are_masked_outside_assistant_replies(
    port: int, tokenizer: str, packing: str, use_shm: bool
):
    if use_shm and not shm.SHM_DIR.is_dir():
        pytest.skip("no /dev/shm")
    options = {"vocab_size": "320"} if tokenizer == "bpe" else {}
    client = DataClient(f"127.0.0.1:{port}", use_shm=use_shm)
    try:
        spec = DatasetSpec(
            module="chat", source="talks.jsonl", tokenizer=tokenizer, packing=packing, options=options
        )
        info = client.prepare(spec)
        stats = json.loads(info.stats_json)
        assert stats["trained_tokens"]["train"] > 0
        encoded = {
            m: client.stub.Encode(pb.EncodeRequest(dataset_id=info.dataset_id, text=m)).tokens
            for m in MARKERS
        }
        assert all(len(ids) == 1 for ids in encoded.values())  # each marker is one token
        markers = {ids[0]: m for m, ids in encoded.items()}
        trained = masked = 0
        batches = client.batches(
            info.dataset_id, "train", 8, 48, 5, 0, 6, vocab_size=info.vocab_size, per_message=2
        )
        for x, y in batches:
            t, m = check_rows(x.numpy(), y.numpy(), markers)
            trained, masked = trained + t, masked + m
        assert trained > 100 and masked > 100
    finally:
        client.close()


def test_train_on_all_masks_no_target_in_stream_packing(port: int):
    client = DataClient(f"127.0.0.1:{port}")
    try:
        info = client.prepare(DatasetSpec(module="chat", source="talks.jsonl", options={"train_on": "all"}))
        for _, y in client.batches(info.dataset_id, "train", 8, 48, 5, 0, 3):
            assert (y.numpy() != -1).all()
    finally:
        client.close()
