"""End to end: all services as real processes against a real Redis; jobs go in over HTTP."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simtrain.cli import DEMO_CORPUS
from simtrain.client import GatewayClient
from simtrain.queue import JobQueue
from simtrain.redis_server import free_port
from simtrain.settings import Settings
from simtrain.stack import LocalStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("e2e")
    data_root = root / "data"
    data_root.mkdir()
    shutil.copyfile(DEMO_CORPUS, data_root / "tiny.txt")
    (root / "outside.txt").write_text("not under the data root\n")
    env = {
        "REDIS_URL": redis_url,
        # Fail fast when a data service is unreachable: 3 attempts, 0.1 s then 0.2 s apart.
        "SIMTRAIN_DATA_SERVICE_RETRIES": "2",
        "SIMTRAIN_DATA_SERVICE_BACKOFF_S": "0.1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings = Settings(
        key_prefix=f"simtrain-e2e:{os.getpid()}:", data_root=data_root, state_dir=root / "var"
    )
    stack = LocalStack(settings, gateway_port=0).start()
    try:
        yield stack
    finally:
        stack.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def client(stack: LocalStack) -> GatewayClient:
    return GatewayClient(stack.gateway_url)


def spec(**training: int | float) -> dict:
    return {
        "dataset": {"module": "text", "source": "tiny.txt"},
        "model": {"model_type": "gpt-nano"},
        "training": {
            "max_iters": 150,
            "batch_size": 16,
            "block_size": 32,
            "learning_rate": 5e-3,
            "eval_interval": 50,
            "eval_iters": 5,
            "log_interval": 10,
        }
        | training,
    }


def test_job_trains_and_reports(client: GatewayClient, stack: LocalStack):
    ready = httpx.get(f"{stack.gateway_url}/readyz")
    assert ready.status_code == 200, ready.text

    job = client.submit(spec())
    assert job["status"] == "queued"
    final = client.wait(job["id"], timeout_s=240)
    assert final["status"] == "succeeded", final["error"]
    assert final["progress"] == {"step": 150, "max_iters": 150}
    assert final["attempts"] == 1

    report = client.report(job["id"])
    ln_vocab = math.log(report["dataset"]["vocab_size"])
    assert report["loss_at_init"]["val"] == pytest.approx(ln_vocab, abs=0.3)
    assert report["final"]["val_loss"] < ln_vocab - 1.0
    assert [step for step, _ in report["curve"]["val"]] == [0, 50, 100, 150]
    assert all(s["completion"] for s in report["samples"])
    assert Path(report["checkpoint"]).exists()

    metrics = httpx.get(f"{stack.gateway_url}/v1/jobs/{job['id']}/metrics").json()["metrics"]
    assert {"train/loss", "lr", "tokens_per_s", "data_wait_frac"} <= set(metrics[-2]) | set(metrics[-1])


@pytest.mark.parametrize(
    ("source", "words"),
    [("no-such-file.txt", "'no-such-file.txt' not found"), ("../outside.txt", "outside the data root")],
)
def test_a_source_the_data_service_refuses_is_422_at_submit(stack: LocalStack, source: str, words: str):
    """Checked with the data service when submitted: refused naming the field, not a job that fails later."""
    body = spec() | {"dataset": {"module": "text", "source": source}}
    response = httpx.post(f"{stack.gateway_url}/v1/jobs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == ["dataset.source"]
    assert words in error["message"]


def test_unreachable_data_service_fails_after_bounded_retries(client: GatewayClient, stack: LocalStack):
    job = client.submit(spec() | {"data_service": f"127.0.0.1:{free_port()}"})
    final = client.wait(job["id"], timeout_s=60)
    assert final["status"] == "failed"
    assert "unreachable after 3 attempts" in final["error"]


def test_invalid_spec_is_422_naming_the_field(stack: LocalStack):
    response = httpx.post(f"{stack.gateway_url}/v1/jobs", json=spec(max_iters=0))
    assert response.status_code == 422
    assert "training.max_iters" in response.text


def test_worker_survives_bad_jobs(client: GatewayClient, stack: LocalStack):
    """After the failures above, the same worker still trains a job to the end."""
    final = client.wait(client.submit(spec(max_iters=20, eval_interval=10))["id"], timeout_s=120)
    assert final["status"] == "succeeded", final["error"]
    assert all(child.process.poll() is None for child in stack.children)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    simtrain = Path(sys.executable).parent / "simtrain"
    return subprocess.run([str(simtrain), *args], capture_output=True, text=True, timeout=180)


def test_cli_submit_watch(stack: LocalStack, tmp_path: Path):
    spec_file = tmp_path / "job.json"
    spec_file.write_text(json.dumps(spec(max_iters=20, eval_interval=10)))
    done = run_cli("submit", "--spec", str(spec_file), "--watch", "--gateway", stack.gateway_url)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.split()[0]
    assert "succeeded" in done.stdout
    assert "step 20/20" in done.stdout

    watched = run_cli("watch", job_id, "--gateway", stack.gateway_url)
    assert watched.returncode == 0
    assert "succeeded" in watched.stdout

    failing = run_cli("submit", "--source", "missing.txt", "--watch", "--gateway", stack.gateway_url)
    assert failing.returncode == 1
    assert "missing.txt" in failing.stdout

    invalid = run_cli("submit", "--max-iters", "0", "--gateway", stack.gateway_url)
    assert invalid.returncode == 1
    assert "training.max_iters" in invalid.stdout


def test_cancel_a_running_job(client: GatewayClient, stack: LocalStack):
    queue = JobQueue.from_url(stack.redis_url, prefix=stack.settings.key_prefix)
    job_id = client.submit(spec(max_iters=100_000))["id"]
    deadline = time.monotonic() + 60
    while client.job(job_id)["progress"]["step"] < 10:
        assert time.monotonic() < deadline, "the job never got going"
        time.sleep(0.1)
    queue.request_cancel(job_id)
    final = client.wait(job_id, timeout_s=30)
    assert final["status"] == "cancelled"
    assert final["progress"]["step"] < 100_000
    assert (stack.settings.jobs_dir / job_id / "checkpoint.pt").exists()
