"""CPU DDP: two gloo processes under torchrun, started by a worker and by hand (as Kubernetes does).

Real Redis, a real data service, real ``torchrun``: what the GPU path runs, with gloo in place of NCCL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.redis_server import free_port
from simtrain.settings import Settings
from tests.integration.trainer_support import final_weights, job_spec
from trainer_service.checkpoint import load_checkpoint
from trainer_service.launch import settings_env
from trainer_service.worker import Worker


def test_two_processes_train_like_one_with_twice_the_batch(settings: Settings, job_queue: JobQueue):
    job_queue.ensure_group()
    ddp = job_queue.submit(job_spec(settings.data_service_addr, batch_size=4, nproc=2))
    single = job_queue.submit(job_spec(settings.data_service_addr, batch_size=8))
    worker = Worker(settings, job_queue)
    assert worker.work_one(block_ms=100) and worker.work_one(block_ms=100)
    for job in (ddp, single):
        record = job_queue.get(job.id)
        assert record.status == JobStatus.succeeded, record.error
        assert record.attempts == 1

    # Rank r streamed slice r of the windows the single process drew for each step, and DDP averaged the
    # two gradients: the same update as one batch of 8. Had both ranks read one shard, this would fail.
    ddp_weights, single_weights = final_weights(settings, ddp.id), final_weights(settings, single.id)
    assert list(ddp_weights) == list(single_weights)
    for name, value in ddp_weights.items():
        torch.testing.assert_close(value, single_weights[name], atol=2e-5, rtol=1e-4, msg=name)
    ddp_rows, single_rows = job_queue.metrics(ddp.id), job_queue.metrics(single.id)
    for key in ("train/loss", "val/loss"):
        got = [(r["step"], r[key]) for r in ddp_rows if key in r]
        want = [(r["step"], r[key]) for r in single_rows if key in r]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-4)

    # Rank 0 alone wrote: each logged step once, one checkpoint and one report (with its plot), nothing else.
    assert [r["step"] for r in ddp_rows if "train/loss" in r] == [2, 4, 6, 8, 10, 12]
    assert [r["step"] for r in ddp_rows if "val/loss" in r] == [0, 6, 12]
    assert sorted(p.name for p in (settings.jobs_dir / ddp.id).iterdir()) == [
        "checkpoint.pt",
        "report.json",
        "report.png",
        "torchrun.log",
    ]
    report = job_queue.report(ddp.id)
    assert report["speed"]["world_size"] == 2
    assert report["speed"]["device"] == "cpu" and report["speed"]["mfu"] is None
    assert report["samples"]
    state = load_checkpoint(settings.jobs_dir / ddp.id / "checkpoint.pt")
    assert state["data"]["world_size"] == 2 and state["data"]["next_step"] == 12
    assert len(state["rng"]) == 2  # every rank's RNG, so each resumes its own dropout masks
    assert not torch.equal(state["rng"][0]["cpu"], state["rng"][1]["cpu"])


def test_torchrun_by_hand_runs_the_job_and_resumes_after_sigterm(settings: Settings, job_queue: JobQueue):
    """The PyTorchJob contract: no worker, rank 0 claims the job and records it; SIGTERM checkpoints."""
    spec = job_spec(settings.data_service_addr, nproc=2, max_iters=300, eval_interval=150, log_interval=5)
    job = job_queue.submit(spec)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "trainer_service.distributed",
        "--job-id",
        job.id,
    ]
    env = os.environ | settings_env(settings)
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while (record := job_queue.get(job.id)).progress.step < 20:
            assert first.poll() is None, first.stdout.read().decode()
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.05)
        assert record.status == JobStatus.running and record.worker.startswith("torchrun@")
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()

    record = job_queue.get(job.id)
    assert record.status == JobStatus.queued, record.error
    stopped_at = load_checkpoint(settings.jobs_dir / job.id / "checkpoint.pt")["step"]
    assert 20 <= stopped_at < 300 and stopped_at % 5 == 0  # the ranks agreed to stop at a logged step

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    record = job_queue.get(job.id)
    assert record.status == JobStatus.succeeded, record.error
    assert record.attempts == 2
    steps = [r["step"] for r in job_queue.metrics(job.id) if "train/loss" in r]
    # The second run went on from the checkpoint's step: no step logged twice, none skipped.
    assert steps == list(range(5, 301, 5))
    assert "resumes at step" in second.stdout + second.stderr


def test_a_multinode_job_waits_queued_for_torchrun_on_its_nodes(settings: Settings, job_queue: JobQueue):
    job_queue.ensure_group()
    job = job_queue.submit(job_spec(settings.data_service_addr, nodes=2))
    assert Worker(settings, job_queue).work_one(block_ms=100)
    record = job_queue.get(job.id)
    assert record.status == JobStatus.queued and record.attempts == 0
    assert "asks for 2 nodes" in record.error and f"--job-id {job.id}" in record.error
    assert job_queue.r.xpending(job_queue.stream, "trainers")["pending"] == 0  # not claimed again and again


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(("gpus", "error"), [(1, "sees no GPU"), (2, "needs 2 GPUs; this trainer sees 0")])
def test_a_job_wanting_more_gpus_than_seen_fails_with_the_reason(
    settings: Settings, job_queue: JobQueue, gpus: int, error: str
):
    job_queue.ensure_group()
    job = job_queue.submit(job_spec(settings.data_service_addr, gpus=gpus))
    assert Worker(settings, job_queue).work_one(block_ms=100)
    record = job_queue.get(job.id)
    assert record.status == JobStatus.failed
    assert error in record.error


def test_a_failing_multiprocess_job_fails_with_rank_0s_reason(settings: Settings, job_queue: JobQueue):
    job_queue.ensure_group()
    quick = settings.model_copy(update={"data_service_retries": 1, "data_service_backoff_s": 0.05})
    job = job_queue.submit(job_spec(f"127.0.0.1:{free_port()}", nproc=2))
    assert Worker(quick, job_queue).work_one(block_ms=100)
    record = job_queue.get(job.id)
    assert record.status == JobStatus.failed
    assert record.error.startswith("prepare dataset: data service at 127.0.0.1:")
    assert "unreachable after 2 attempts" in record.error
