"""The `simtrain` CLI against a real gateway (in a thread), a real Redis and a fake data service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.cli import app
from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import FakeDataService, GrpcServer, serve
from tests.simtrain_up import SIMTRAIN, stack_env, start_up
from trainer_service.report.build import refused_report

TOKEN = "cli-token"


@pytest.fixture
def fake_data() -> Iterator[tuple[FakeDataService, GrpcServer]]:
    fake = FakeDataService()
    server = GrpcServer(fake)
    yield fake, server
    server.stop()


@pytest.fixture
def gateway(
    redis_url: str,
    key_prefix: str,
    fake_data: tuple[FakeDataService, GrpcServer],
    job_queue: JobQueue,
    tmp_path,
) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_service_addr=fake_data[1].address,
        state_dir=tmp_path / "var",
    )
    with serve(create_app(settings, GatewaySettings(api_token=TOKEN))) as client:
        yield str(client.base_url)


def cli(gateway: str, *args: str, token: str | None = TOKEN) -> Any:
    env = {"SIMTRAIN_GATEWAY_URL": gateway, "COLUMNS": "150"} | (
        {"SIMTRAIN_API_TOKEN": token} if token else {}
    )
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def test_submit_from_yaml_with_flag_overrides(gateway: str, job_queue: JobQueue, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "dataset: {module: text, source: notes.txt}\n"
        "model: {n_layer: 2, n_head: 2, n_embd: 32}\n"
        "training:\n  max_iters: 40\n  batch_size: 8\n"
    )
    done = cli(gateway, "submit", "--spec", str(spec), "--max-iters", "25", "--json")
    assert done.exit_code == 0, done.output
    accepted = json.loads(done.output)
    assert accepted["status"] == "queued"
    record = job_queue.get(accepted["id"])
    assert record.spec.training.max_iters == 25 and record.spec.training.batch_size == 8
    assert record.spec.model.sizes() == (2, 2, 32)
    assert record.spec.dataset.source == "notes.txt"

    preset = cli(gateway, "submit", "--spec", str(spec), "--model-type", "gpt-micro", "--source", "b.txt")
    record = job_queue.get(preset.output.strip())
    assert record.spec.model.model_type == "gpt-micro" and record.spec.dataset.source == "b.txt"


def test_submit_json_spec_and_defaults(gateway: str, job_queue: JobQueue, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"dataset": {"id": "ds-1"}, "training": {"max_iters": 7}}))
    record = job_queue.get(cli(gateway, "submit", "--spec", str(spec)).output.strip())
    assert record.spec.dataset.id == "ds-1" and record.spec.training.max_iters == 7
    plain = job_queue.get(cli(gateway, "submit").output.strip())
    assert plain.spec.dataset.source == "tiny.txt" and plain.spec.model.model_type == "gpt-nano"
    assert plain.spec.training.max_iters == 300


def test_submit_errors_exit_1(gateway: str, tmp_path: Path) -> None:
    invalid = cli(gateway, "submit", "--max-iters", "0")
    assert invalid.exit_code == 1 and "training.max_iters" in invalid.output
    (tmp_path / "bad.yaml").write_text("- not\n- a mapping\n")
    assert cli(gateway, "submit", "--spec", str(tmp_path / "bad.yaml")).exit_code == 1
    missing = cli(gateway, "submit", "--spec", str(tmp_path / "none.yaml"))
    assert missing.exit_code == 1 and "cannot read" in missing.output
    unauthorized = cli(gateway, "submit", token=None)
    assert unauthorized.exit_code == 1 and "401" in unauthorized.output
    wrong = cli(gateway, "jobs", token="nope")
    assert wrong.exit_code == 1 and "401" in wrong.output
    nowhere = cli("http://127.0.0.1:1", "jobs")
    assert nowhere.exit_code == 1 and "cannot reach the gateway" in nowhere.output


def test_submit_with_idempotency_key(gateway: str) -> None:
    first = cli(gateway, "submit", "--idempotency-key", "abc").output.strip()
    assert cli(gateway, "submit", "--idempotency-key", "abc").output.strip() == first


def fake_trainer(queue: JobQueue, job_id: str, outcome: JobStatus, steps: int = 5) -> threading.Thread:
    def run() -> None:
        time.sleep(0.3)
        queue.start(job_id, "w1")
        for step in range(1, steps + 1):
            time.sleep(0.05)
            queue.add_metrics(job_id, {"step": step, "train/loss": 3.0 / step, "tokens_per_s": 1234.0})
        queue.finish(job_id, outcome, "it broke" if outcome is JobStatus.failed else None)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("outcome", "exit_code"), [(JobStatus.succeeded, 0), (JobStatus.failed, 1), (JobStatus.cancelled, 3)]
)
def test_watch_exits_with_the_outcome(gateway: str, job_queue: JobQueue, outcome: JobStatus, exit_code: int):
    job_id = cli(gateway, "submit", "--max-iters", "5").output.strip()
    thread = fake_trainer(job_queue, job_id, outcome)
    watched = cli(gateway, "watch", job_id)
    thread.join()
    assert watched.exit_code == exit_code, watched.output
    assert outcome.value in watched.output
    assert "step 5/5" in watched.output
    if outcome is JobStatus.failed:
        assert "it broke" in watched.output


def test_submit_watch_json(gateway: str, job_queue: JobQueue) -> None:
    runner = threading.Thread(target=lambda: None)
    result: dict[str, Any] = {}

    def submit() -> None:
        result["run"] = cli(gateway, "submit", "--max-iters", "3", "--watch", "--json")

    runner = threading.Thread(target=submit)
    runner.start()
    deadline = time.monotonic() + 10
    while not job_queue.r.xlen(job_queue.stream):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job_id = job_queue.r.xrange(job_queue.stream)[0][1]["id"]
    fake_trainer(job_queue, job_id, JobStatus.succeeded, steps=3).join()
    runner.join(timeout=30)
    final = json.loads(result["run"].output)
    assert result["run"].exit_code == 0
    assert final["id"] == job_id and final["status"] == "succeeded" and final["progress"]["step"] == 3


def test_jobs_cancel_delete_report(gateway: str, job_queue: JobQueue) -> None:
    ids = [cli(gateway, "submit", "--max-iters", "9").output.strip() for _ in range(3)]
    listed = json.loads(cli(gateway, "jobs", "--json").output)
    assert [j["id"] for j in listed["jobs"]] == ids[::-1]
    table = cli(gateway, "jobs", "--limit", "2")
    assert ids[2] in table.output and ids[0] not in table.output and "--cursor" in table.output

    cancelled = cli(gateway, "cancel", ids[0], "--json")
    assert json.loads(cancelled.output)["status"] == "cancelled"
    assert "cancelled" in cli(gateway, "jobs", "--status", "cancelled").output
    job_queue.start(ids[1], "w1")
    assert "stops at its next step" in cli(gateway, "cancel", ids[1]).output

    assert cli(gateway, "delete", ids[1]).exit_code == 1  # still running
    assert cli(gateway, "delete", ids[0]).exit_code == 0
    assert cli(gateway, "report", ids[0]).exit_code == 1

    report = {
        "job_id": ids[2],
        "loss_at_init": {"val": 3.9, "expected_ln_vocab": 3.87},
        "final": {"train_loss": 1.1, "val_loss": 1.2},
        "samples": [{"prompt": "Once", "completion": " upon a time"}],
        "checks": [{"name": "loss_falls", "verdict": "pass", "reason": "fell by 2.7"}],
        "checkpoint": "/tmp/x/checkpoint.pt",
        "baselines": {
            "unigram_nats": 1.8,
            "uniform_nats": 3.87,
            "below_unigram_nats": 0.6,
            "below_unigram_share": 0.333,
            "below_uniform_nats": 2.67,
            "below_uniform_share": 0.69,
        },
    }
    job_queue.set_report(ids[2], report)
    shown = cli(gateway, "report", ids[2])
    assert shown.exit_code == 0
    for words in ("loss at init 3.900", "final train loss", "upon a time", "loss_falls", "fell by 2.7"):
        assert words in shown.output
    assert "learned: val loss 0.600 nats (33.3%) below the unigram baseline 1.800" in shown.output
    assert json.loads(cli(gateway, "report", ids[2], "--json").output) == report


def test_a_report_of_data_never_trained_prints_not_fit_and_why(gateway: str, job_queue: JobQueue) -> None:
    job_id = cli(gateway, "submit").output.strip()
    why = "the data service cannot prepare the dataset: 40 tokens, fewer than one block of 65"
    job_queue.set_report(job_id, refused_report(job_id, {"module": "text", "source": "tiny.txt"}, why))
    shown = cli(gateway, "report", job_id)
    assert shown.exit_code == 4
    assert "not fit" in shown.output and "batches_served" in shown.output and "fewer than one" in shown.output
    assert "loss at init" not in shown.output


def test_checkpoint_download(gateway: str, job_queue: JobQueue, tmp_path: Path) -> None:
    job_id = cli(gateway, "submit").output.strip()
    missing = cli(gateway, "checkpoint", job_id, "-o", str(tmp_path / "c.pt"))
    assert missing.exit_code == 1 and "no checkpoint yet" in missing.output
    path = tmp_path / "var" / "jobs" / job_id / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00weights" * 1000)
    done = cli(gateway, "checkpoint", job_id, "-o", str(tmp_path / "c.pt"))
    assert done.exit_code == 0 and "8,000 bytes" in done.output
    assert (tmp_path / "c.pt").read_bytes() == path.read_bytes()


def test_datasets_commands(
    gateway: str, fake_data: tuple[FakeDataService, GrpcServer], tmp_path: Path
) -> None:
    fake, _ = fake_data
    modules = cli(gateway, "datasets", "modules")
    assert "text" in modules.output and "val_fraction=0.1" in modules.output
    assert json.loads(cli(gateway, "datasets", "list", "--json").output)[0]["id"] == "ds-1"
    assert "ds-1" in cli(gateway, "datasets", "list").output
    assert "short source" in cli(gateway, "datasets", "show", "ds-1").output
    assert cli(gateway, "datasets", "show", "nope").exit_code == 1

    source = tmp_path / "notes.txt"
    source.write_bytes(b"some words\n" * 50_000)
    uploaded = json.loads(cli(gateway, "datasets", "upload", str(source), "--json").output)
    assert uploaded["source"] == "uploads/notes.txt" and uploaded["size_bytes"] == 550_000
    assert max(fake.uploads[0]["chunks"]) <= 1024 * 1024
    named = cli(gateway, "datasets", "upload", str(source), "--name", "other.txt")
    assert "uploads/other.txt" in named.output

    prepared = cli(
        gateway,
        "datasets",
        "prepare",
        "--source",
        "notes.txt",
        "--tokenizer",
        "byte",
        "--option",
        "a=1",
        "--json",
    )
    assert json.loads(prepared.output)["id"] == "ds-notes.txt"
    refused = cli(gateway, "datasets", "prepare", "--source", "bad.txt")
    assert refused.exit_code == 1 and "not UTF-8" in refused.output
    assert cli(gateway, "datasets", "prepare", "--source", "x", "--option", "novalue").exit_code == 2


# -- up and down ------------------------------------------------------------------------------------


def test_up_then_down(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    env = stack_env(os.environ | {"REDIS_URL": redis_url}, key_prefix, tmp_path)
    up, _ = start_up(env)
    try:
        pid_file = tmp_path / "var" / "simtrain-up.json"
        info = json.loads(pid_file.read_text())
        assert info["pid"] == up.pid
        assert httpx.get(f"{info['gateway']}/healthz").json() == {"status": "ok"}

        again = subprocess.run([str(SIMTRAIN), "up"], env=env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "already running" in again.stdout

        down = subprocess.run([str(SIMTRAIN), "down"], env=env, capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stopped" in down.stdout
        assert up.wait(timeout=10) == 0
        assert not pid_file.exists()
        nothing = subprocess.run([str(SIMTRAIN), "down"], env=env, capture_output=True, text=True, timeout=30)
        assert nothing.returncode == 0 and "no local stack is running" in nothing.stdout
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)
