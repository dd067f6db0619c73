"""The data service killed and restarted under a trainer: the trainer waits with backoff, reconnects,
resumes a broken stream at the exact step, and the job ends with the weights of an untroubled run.

A job's train stream is often delivered whole (into gRPC's buffers) long before training reaches its end,
so the kill in the job test breaks the next stream the job opens; the stream test breaks one mid-way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from simtrain.jobs import DatasetSpec, JobStatus
from simtrain.queue import JobQueue
from simtrain.redis_server import free_port
from simtrain.settings import Settings
from tests.integration.trainer_support import DataService
from tests.reliability.support import (
    REPO,
    Workers,
    assert_same_weights,
    final_weights,
    logged_train_steps,
    long_spec,
    reference_weights,
    wait_finished,
    wait_until,
    worker_env,
)
from trainer_service.data_client import DataClient

pytestmark = pytest.mark.timeout(180)


def start_data_service(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    env = os.environ | {
        "SIMTRAIN_DATA_SERVICE_PORT": str(port),
        "SIMTRAIN_DATA_ROOT": str(settings.data_root),
        "SIMTRAIN_STATE_DIR": str(log.parent / "data-service-state"),
    }
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "data_service"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    wait_until(lambda: "listening on" in log.read_text() or process.poll() is not None, 30, "data service")
    assert process.poll() is None, log.read_text()
    return process


def retried(log: str) -> bool:
    return "batch stream broke at step" in log or "unavailable, retrying" in log


def test_job_survives_a_data_service_restart(
    settings: Settings, data_service: DataService, workers: Workers, tmp_path: Path
):
    queue = JobQueue.from_url(settings.redis_url, prefix=settings.key_prefix)
    port = free_port()
    address = f"127.0.0.1:{port}"
    reference = reference_weights(settings, queue, long_spec(data_service.address))

    log = tmp_path / "data_service.log"
    server = start_data_service(settings, port, log)
    try:
        workers.env = worker_env(settings, data_service_retries=8, data_service_backoff_s=0.1)
        worker = workers.start("w1")
        job = queue.submit(long_spec(address))
        wait_until(lambda: queue.get(job.id).progress.step >= 60, 60, "step 60")
        server.send_signal(signal.SIGKILL)
        server.wait()
        wait_until(lambda: retried(worker.log()), 30, "the trainer to notice and back off")
        assert queue.get(job.id).status == JobStatus.running
        server = start_data_service(settings, port, log)

        record = wait_finished(queue, job.id, 90)
    finally:
        server.kill()
        server.wait()
    assert record.status == JobStatus.succeeded, record.error + workers.logs()
    assert record.attempts == 1  # the same attempt went on: nothing was claimed again
    assert logged_train_steps(queue, job.id) == list(range(5, 301, 5))
    assert_same_weights(final_weights(settings, job.id), reference)


def test_a_broken_stream_resumes_at_the_exact_step(settings: Settings, tmp_path: Path, caplog):
    port = free_port()
    server = start_data_service(settings, port, tmp_path / "data_service.log")
    client = DataClient(f"127.0.0.1:{port}", retries=8, backoff_s=0.1)
    try:
        dataset = client.prepare(DatasetSpec(module="text", source="tiny.txt")).dataset_id
        args = (dataset, "train", 4, 32, 7)
        clean = list(client.batches(*args, start_step=0, num_steps=60))
        # Far more than any buffer holds; 8 batches a message, so the one holding step 20 ends at 23.
        stream = client.batches(*args, start_step=0, num_steps=100_000, per_message=8)
        got = [next(stream) for _ in range(20)]
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = start_data_service(settings, port, tmp_path / "data_service.log")
        got += [next(stream) for _ in range(40)]
    finally:
        client.close()
        server.kill()
        server.wait()
    broke = [r.getMessage() for r in caplog.records if "batch stream broke" in r.getMessage()]
    assert broke and broke[0].startswith("batch stream broke at step 24 "), broke
    for step, ((x, y), (cx, cy)) in enumerate(zip(got, clean, strict=True)):
        assert torch.equal(x, cx) and torch.equal(y, cy), f"batch {step} differs from the clean stream's"
