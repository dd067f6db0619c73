"""Asking a job's model: the real gateway, Redis, and a generate server process, on a tiny trained job;
and the spec's probes, answered at every evaluation of a tiny job.

The job trains in this process (``JobRun``, a real data service); the generate server is the child process
``python -m trainer_service.generate_server`` that ``simtrain up`` runs, reading the same jobs folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from typer.testing import CliRunner

from data_service.modules.memory_tasks import LookupModule
from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.cli import app
from simtrain.generate_queue import GenerateQueue
from simtrain.jobs import DatasetSpec, JobRecord, ProbeSpec
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import error_of, serve
from tests.integration.trainer_support import DataService, job_spec
from trainer_service.checkpoint import save_checkpoint
from trainer_service.job_runner import JobInterrupted, JobRun
from trainer_service.sampler import Sampler

CORPUS_CHARS = set(Path("data_service/demo/tiny.txt").read_text())


@pytest.fixture
def trained(settings: Settings, data_service: DataService, job_queue: JobQueue) -> JobRecord:
    job = job_queue.submit(job_spec(data_service.address))
    JobRun(job, settings, job_queue, lambda: False).run()
    return job


@pytest.fixture
def gateway(settings: Settings) -> Iterator[httpx.Client]:
    with serve(create_app(settings, GatewaySettings(generate_timeout_s=20))) as client:
        yield client


@pytest.fixture
def generate_server(settings: Settings) -> Iterator[subprocess.Popen]:
    env = os.environ | {
        "REDIS_URL": settings.redis_url,
        "SIMTRAIN_KEY_PREFIX": settings.key_prefix,
        "SIMTRAIN_STATE_DIR": str(settings.state_dir),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer_service.generate_server"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    queue = GenerateQueue.from_url(settings.redis_url, settings.key_prefix)
    deadline = time.monotonic() + 60
    while not queue.servers():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the generate server did not start"
        time.sleep(0.1)
    try:
        yield process
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0  # SIGTERM: it finishes its request and exits cleanly
        assert not queue.servers()  # and takes its heartbeat with it


def test_a_trained_job_answers_with_its_checkpoint_and_tokenizer(
    trained: JobRecord, gateway: httpx.Client, generate_server: subprocess.Popen, settings: Settings
):
    body = {
        "prompt": "At noon, Ada",
        "max_new_tokens": 40,
        "temperature": 0.8,
        "top_k": 10,
        "n": 2,
        "seed": 3,
    }
    response = gateway.post(f"/v1/jobs/{trained.id}/generate", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["job_id"] == trained.id and result["step"] == 12 and result["prompt"] == "At noon, Ada"
    assert len(result["completions"]) == 2
    for c in result["completions"]:
        assert c["tokens"] == 40 and not c["stopped"] and len(c["text"]) == 40  # char tokenizer
        assert set(c["text"]) <= CORPUS_CHARS
    # The very answers the checkpoint gives alone, sampled here with the tokenizer it carries.
    local = Sampler.from_checkpoint(settings.jobs_dir / trained.id / "checkpoint.pt")
    expected = local.complete("At noon, Ada", 40, 0.8, 10, 2, seed=3)
    assert [c["text"] for c in result["completions"]] == [c.text for c in expected]

    # The CLI asks the same, by a short id.
    env = {"SIMTRAIN_GATEWAY_URL": str(gateway.base_url), "COLUMNS": "150"}
    args = ["ask", trained.id[:8], "At noon, Ada", "--max-new-tokens", "40", "--temperature", "0.8"]
    done = CliRunner().invoke(app, [*args, "--top-k", "10", "-n", "2", "--seed", "3", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["completions"] == result["completions"]
    shown = CliRunner().invoke(app, [*args, "--seed", "3"], env=env)
    assert shown.exit_code == 0 and "answer 1 (model at step 12)" in shown.output


def test_a_checkpoint_replaced_while_training_is_read_again(
    trained: JobRecord, gateway: httpx.Client, generate_server: subprocess.Popen, settings: Settings
):
    url = f"/v1/jobs/{trained.id}/generate"
    assert gateway.post(url, json={"prompt": "A"}).json()["step"] == 12
    path = settings.jobs_dir / trained.id / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    save_checkpoint(path, state | {"step": 13})  # what the trainer's next checkpoint does
    assert gateway.post(url, json={"prompt": "A"}).json()["step"] == 13


def test_unknown_jobs_are_404(gateway: httpx.Client):
    error_of(gateway.post(f"/v1/jobs/{'a' * 32}/generate", json={"prompt": "hi"}), 404)
    error_of(gateway.post("/v1/jobs/not-a-job/generate", json={"prompt": "hi"}), 404)


def test_a_job_without_a_checkpoint_yet_is_409(
    gateway: httpx.Client, job_queue: JobQueue, data_service: DataService
):
    job = job_queue.submit(job_spec(data_service.address))
    error = error_of(gateway.post(f"/v1/jobs/{job.id}/generate", json={"prompt": "hi"}), 409)
    assert error["code"] == "checkpoint_not_ready"
    assert "has no checkpoint yet" in error["message"] and "first evaluation" in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"prompt": "hi", "max_new_tokens": 0}, "max_new_tokens"),
        ({"prompt": "hi", "max_new_tokens": 100_000}, "max_new_tokens"),
        ({"prompt": "hi", "temperature": 0}, "temperature"),
        ({"prompt": "hi", "top_k": 0}, "top_k"),
        ({"prompt": "hi", "n": 9}, "n"),
        ({"prompt": "hi", "seed": -1}, "seed"),
        ({"prompt": "hi", "greedy": True}, "greedy"),
        ({}, "prompt"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    gateway: httpx.Client, job_queue: JobQueue, data_service: DataService, body: dict, field: str
):
    job = job_queue.submit(job_spec(data_service.address))  # checked before its checkpoint is looked for
    error = error_of(gateway.post(f"/v1/jobs/{job.id}/generate", json=body), 422)
    assert [d["field"] for d in error["details"]] == [field]


def test_a_prompt_the_tokenizer_cannot_encode_is_422_on_prompt(
    trained: JobRecord, gateway: httpx.Client, generate_server: subprocess.Popen
):
    assert "€" not in CORPUS_CHARS
    error = error_of(gateway.post(f"/v1/jobs/{trained.id}/generate", json={"prompt": "Ada € 5"}), 422)
    assert error["details"][0]["field"] == "prompt"
    assert "cannot encode the prompt" in error["message"] and "'€'" in error["message"]


def test_a_checkpoint_without_a_tokenizer_is_409_saying_so(
    trained: JobRecord, gateway: httpx.Client, generate_server: subprocess.Popen, settings: Settings
):
    path = settings.jobs_dir / trained.id / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["tokenizer"]  # a checkpoint from before they carried one
    save_checkpoint(path, state)
    error = error_of(gateway.post(f"/v1/jobs/{trained.id}/generate", json={"prompt": "hi"}), 409)
    assert error["code"] == "checkpoint_unusable" and "carries no tokenizer" in error["message"]


def test_no_generate_server_is_503_at_once(trained: JobRecord, gateway: httpx.Client):
    started = time.monotonic()
    error = error_of(gateway.post(f"/v1/jobs/{trained.id}/generate", json={"prompt": "hi"}), 503)
    assert time.monotonic() - started < 5
    assert error["code"] == "generate_unavailable"
    assert "python -m trainer_service.generate_server" in error["message"]


def test_a_generate_server_that_never_answers_is_503_after_the_timeout(
    trained: JobRecord, settings: Settings
):
    queue = GenerateQueue.from_url(settings.redis_url, settings.key_prefix)
    queue.heartbeat("stalled", ttl_s=30)  # looks alive, takes nothing
    with serve(create_app(settings, GatewaySettings(generate_timeout_s=1))) as gateway:
        error = error_of(gateway.post(f"/v1/jobs/{trained.id}/generate", json={"prompt": "hi"}), 503)
    assert "no generate server took the request within 1s" in error["message"]
    assert queue.r.llen(queue.requests) == 0  # the request was taken back, so no server answers it late


def test_probes_are_answered_at_every_evaluation_and_survive_a_resume(
    settings: Settings, data_service: DataService, job_queue: JobQueue
):
    probes = [
        {"prompt": "At noon, Ada", "expected": " the baker"},
        {"prompt": "Hugo counted"},
        {"prompt": "Zoë €"},  # not in the corpus's characters: that probe says so, the job goes on
    ]
    spec = job_spec(data_service.address).model_copy(
        update={"probes": [ProbeSpec.model_validate(p) for p in probes]}
    )
    job = job_queue.submit(spec)
    first = JobRun(job, settings, job_queue, lambda: first.trainer.iter_num + 1 >= 5)
    with pytest.raises(JobInterrupted):
        first.run()
    report = JobRun(job, settings, job_queue, lambda: False).run()  # resumed from step 5

    table = report["probes"]
    assert table["steps"] == [0, 6, 12]
    scored, free, broken = table["items"]
    assert [r["step"] for r in scored["answers"]] == [0, 6, 12]
    for row in scored["answers"]:
        assert set(row) == {"step", "text", "exact", "prefix", "token_accuracy"}
        assert len(row["text"]) == len(" the baker") + 4  # char tokenizer: the expected length and 4
        assert 0.0 <= row["token_accuracy"] <= 1.0
    assert [set(r) for r in free["answers"]] == [{"step", "text"}] * 3 and len(
        free["answers"][0]["text"]
    ) == 32
    assert broken["answers"] == [] and "cannot encode this probe" in broken["error"]
    assert table["final"]["scored"] == 1
    # The last answer is the model's greedy answer with its final weights, as `simtrain sample` gives it.
    local = Sampler.from_checkpoint(settings.jobs_dir / job.id / "checkpoint.pt")
    [again] = local.complete("Hugo counted", max_new_tokens=32, greedy=True)
    assert free["answers"][-1]["text"] == again.text


def test_a_retrieval_job_is_probed_and_asked_after_each_prompts_context(
    settings: Settings,
    data_service: DataService,
    job_queue: JobQueue,
    gateway: httpx.Client,
    generate_server: subprocess.Popen,
    tmp_path: Path,
):
    options = {"num_facts": "64", "retrieval_corpus": "builtin", "retrieve_k": "1", "context_tokens": "32"}
    module = LookupModule()
    passage = next(iter(module.corpus({o.name: o.default for o in module.options} | options)))
    key, *_, value = passage.removesuffix(".").split()  # "<key> has the code <value>."
    prompt = f"code of {key}? "
    spec = job_spec(data_service.address, block_size=64).model_copy(
        update={
            "dataset": DatasetSpec(module="lookup", source="lookup", packing="pairs", options=options),
            "probes": [ProbeSpec(prompt=prompt, expected=value)],
        }
    )
    job = job_queue.submit(spec)
    report = JobRun(job, settings, job_queue, lambda: False).run()
    [item] = report["probes"]["items"]
    assert item["context"] == passage and "note" not in report["probes"]

    # The probe's last answer is the final model's greedy answer after the passage and the marker.
    checkpoint = settings.jobs_dir / job.id / "checkpoint.pt"
    local = Sampler.from_checkpoint(checkpoint)
    assert local.retrieval == {"data_service": data_service.address, "dataset_id": report["dataset"]["id"]}
    context = local.encode(passage + "\n===\n")
    [greedy] = local.complete(prompt, max_new_tokens=len(value) + 4, greedy=True, context=context)
    assert item["answers"][-1]["text"] == greedy.text
    [bare] = local.complete(prompt, max_new_tokens=len(value) + 4, greedy=True)
    assert bare.text != greedy.text  # even this little training reads the context, so the check tells

    # Asked through the gateway, the generate server finds the same context at the data service.
    body = {"prompt": prompt, "max_new_tokens": 8, "temperature": 0.8, "seed": 5}
    result = gateway.post(f"/v1/jobs/{job.id}/generate", json=body).json()
    assert result["context"] == {"text": passage, "passages": 1} and result["note"] is None
    [sampled] = local.complete(prompt, 8, 0.8, None, 1, seed=5, context=context)
    assert result["completions"][0]["text"] == sampled.text
    env = {"SIMTRAIN_GATEWAY_URL": str(gateway.base_url), "COLUMNS": "200"}
    shown = CliRunner().invoke(app, ["ask", job.id[:8], prompt, "--seed", "5"], env=env)
    assert shown.exit_code == 0 and "retrieved context (1 passage(s), before the prompt):" in shown.output
    assert passage in shown.output

    # Sampled alone, the checkpoint has no index, and says what to do instead.
    alone = CliRunner().invoke(app, ["sample", str(checkpoint), prompt], env=env)
    assert alone.exit_code == 0 and "a checkpoint alone has no index" in alone.output
