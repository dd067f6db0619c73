"""The generate server on a retrieval job's checkpoint when the context cannot be had: a data service that
is down is a failed reply saying so; one without Retrieve (a bare gRPC server: every method UNIMPLEMENTED)
is answered without context, with a note saying why."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import redis
import torch

from data_service import tokenizers
from data_service.tokenizers.char import CharTokenizer
from simtrain.generate_queue import GenerateQueue
from simtrain.redis_server import free_port
from simtrain.settings import Settings
from trainer_service.checkpoint import save_checkpoint
from trainer_service.generate_server import GenerateServer
from trainer_service.model import GPT, GPTConfig

JOB = "0123456789abcdef"


@pytest.fixture
def bare_server() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def server_for(tmp_path: Path, data_service: str) -> GenerateServer:
    """A generate server over one retrieval job's checkpoint, naming ``data_service`` for its context."""
    tok = CharTokenizer.train(["code of poxuze? 3800"])
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, vocab_size=tok.vocab_size, block_size=16))
    state = {
        "model": model.state_dict(),
        "model_config": vars(model.config),
        "step": 3,
        "tokenizer": tokenizers.save(tok),
        "retrieval": {"data_service": data_service, "dataset_id": "00000000deadbeef"},
    }
    settings = Settings(state_dir=tmp_path, data_service_retries=0)
    save_checkpoint(settings.jobs_dir / JOB / "checkpoint.pt", state)
    return GenerateServer(settings, GenerateQueue(redis.Redis()))  # answer() never touches Redis


def ask(server: GenerateServer) -> dict:
    return server.answer({"id": "r1", "job_id": JOB, "prompt": "code of poxuze? ", "max_new_tokens": 4})


def test_a_data_service_that_is_down_fails_the_answer_saying_so(tmp_path: Path) -> None:
    reply = ask(server_for(tmp_path, f"127.0.0.1:{free_port()}"))
    assert reply["ok"] is False and reply["code"] == "failed"
    assert reply["message"].startswith(
        "this model was trained with retrieved context, which could not be found"
    )
    assert "unreachable" in reply["message"]


def test_a_data_service_without_retrieve_answers_without_context_and_says_so(
    tmp_path: Path, bare_server: str
) -> None:
    reply = ask(server_for(tmp_path, bare_server))
    assert reply["ok"] is True and len(reply["completions"]) == 1 and "context" not in reply
    assert reply["note"] == (
        f"asked without retrieved context: the data service at {bare_server} does not offer Retrieve"
    )
