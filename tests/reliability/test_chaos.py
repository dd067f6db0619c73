"""Chaos: 20 small jobs across 2 worker processes, with workers SIGKILLed at random and replaced.

Every job must end exactly once and succeed, none lost, none left ``running``; no job may run on two
workers at once (each attempt begins only after the worker of the attempt before it was dead); and every
job ends with the weights of an uninterrupted run, each training step logged once.
"""

from __future__ import annotations

import os
import random
import time

import pytest
import torch

from simtrain.jobs import JobSpec, JobStatus
from simtrain.queue import GROUP, JobQueue
from simtrain.settings import Settings
from tests.integration.trainer_support import DataService
from tests.reliability.support import (
    Workers,
    assert_same_weights,
    final_weights,
    logged_train_steps,
    long_spec,
    reference_weights,
    worker_env,
)

pytestmark = pytest.mark.timeout(300)
JOBS = 20
SEEDS = (1, 2)  # two kinds of job, so a job finishing with another's weights would show
MAX_ITERS = 150
LEASE_MS = 1500
KILLS = 6


def spec(data_service: DataService, seed: int) -> JobSpec:
    return long_spec(data_service.address, max_iters=MAX_ITERS, seed=seed, eval_interval=30, warmup_iters=10)


def test_twenty_jobs_two_workers_random_kills(
    settings: Settings, data_service: DataService, workers: Workers
):
    seed = int(os.environ.get("SIMTRAIN_CHAOS_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    print(f"chaos seed {seed} (SIMTRAIN_CHAOS_SEED={seed} replays the same kill schedule)")
    queue = JobQueue.from_url(settings.redis_url, prefix=settings.key_prefix, lease_ms=LEASE_MS)
    reference = {s: reference_weights(settings, queue, spec(data_service, s)) for s in SEEDS}

    workers.env = worker_env(settings, lease_ms=LEASE_MS, max_attempts=20)
    live = [workers.start("w0", wait=False), workers.start("w1", wait=False)]
    jobs = {queue.submit(spec(data_service, SEEDS[i % 2])).id: SEEDS[i % 2] for i in range(JOBS)}

    kills = 0
    deadline = time.monotonic() + 200
    while not all_finished(queue, jobs):
        assert time.monotonic() < deadline, "jobs still unfinished:\n" + workers.logs()
        time.sleep(rng.uniform(0.2, 1.5))
        busy = busy_workers(queue, jobs)
        victims = [w for w in live if w.name in busy]
        if kills < KILLS and victims:  # kill a worker in the middle of a job
            victim = rng.choice(victims)
            live.remove(victim)
            victim.kill()
            kills += 1
            live.append(workers.start(f"w{len(workers.started)}", wait=False))
    assert kills == KILLS, "the jobs finished before the chaos was over: make them longer"

    killed = {w.name: w.killed_at for w in workers.started if w.killed_at is not None}
    resumed = 0
    for job_id, job_seed in jobs.items():
        record = queue.get(job_id)
        assert record.status == JobStatus.succeeded, f"{job_id}: {record.error}\n{workers.logs()}"
        history = queue.attempt_history(job_id)
        assert [h["attempt"] for h in history] == list(range(1, record.attempts + 1))
        for before, after in zip(history, history[1:], strict=False):
            # The earlier attempt's worker was killed before the next attempt began: never two at once.
            assert before["worker"] in killed, f"{job_id}: {before} was followed by {after} while alive"
            assert killed[before["worker"]] < after["started_at"], f"{job_id}: {before} overlaps {after}"
        resumed += len(history) - 1
        assert logged_train_steps(queue, job_id) == list(range(5, MAX_ITERS + 1, 5)), job_id
        assert_same_weights(final_weights(settings, job_id), reference[job_seed])
    # Each kill hit a worker mid-job, so each made one more attempt (unless that job just finished).
    assert KILLS // 2 <= resumed <= KILLS, "too few kills landed on a running job"
    assert queue.r.xpending(queue.stream, GROUP)["pending"] == 0  # every message acked: none left held
    print(f"{kills} kills, {resumed} attempts resumed a killed one")


def busy_workers(queue: JobQueue, jobs: dict[str, int]) -> set[str]:
    """Workers holding a job that has begun training."""
    records = [queue.get(job_id) for job_id in jobs]
    return {r.worker for r in records if r.status == JobStatus.running and r.progress.step > 0}


def all_finished(queue: JobQueue, jobs: dict[str, int]) -> bool:
    return all(queue.get(job_id).status.finished for job_id in jobs)


def test_weights_differ_between_the_two_kinds_of_job(settings: Settings, data_service: DataService):
    """Guards the chaos test's check: the two seeds' runs must not end with equal weights."""
    queue = JobQueue.from_url(settings.redis_url, prefix=settings.key_prefix)
    one, two = (reference_weights(settings, queue, spec(data_service, s)) for s in SEEDS)
    assert not all(torch.equal(one[k], two[k]) for k in one)
