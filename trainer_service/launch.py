"""Run a multi-process job on this host: ``torchrun --standalone`` as a child of the worker.

The ranks record the job's outcome themselves (rank 0, or the first rank to fail); the worker keeps the
lease, passes a stop on as SIGTERM, and records a failure only when the ranks died without saying why.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import torch

from simtrain.fencing import AttemptQueue
from simtrain.jobs import JobRecord, JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from trainer_service.outcome import Outcome, fail_if_running
from trainer_service.parallel import procs_per_node

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20


def torchrun_command(
    job_id: str, nproc: int, worker: str, worker_pid: int, attempt: int | None = None
) -> list[str]:
    """``torchrun --standalone --nproc-per-node=N -m trainer_service.distributed --job-id ID``, run by this
    interpreter (so the venv's torch), plus who launched it and the attempt the ranks write for (fenced)."""
    fence = [] if attempt is None else ["--attempt", str(attempt)]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "trainer_service.distributed",
        "--job-id",
        job_id,
        "--worker",
        worker,
        "--worker-pid",
        str(worker_pid),
        *fence,
    ]


def settings_env(settings: Settings) -> dict[str, str]:
    """The worker's settings as the environment the ranks read theirs from (they may not come from env)."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:  # unset stays unset: the child gets the default
            env[f"SIMTRAIN_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env["REDIS_URL"] = settings.redis_url  # read before SIMTRAIN_REDIS_URL
    return env


def run_torchrun(
    job: JobRecord, settings: Settings, queue: JobQueue, worker: str, stopping: threading.Event
) -> Outcome:
    """Run the job's ranks to the end; return how it ended, as the ranks recorded it."""
    training = job.spec.training
    if training.gpus > torch.cuda.device_count():
        error = f"the job needs {training.gpus} GPUs; this trainer sees {torch.cuda.device_count()}"
        fail_if_running(queue, job.id, error)
        return Outcome("failed", error=error)

    nproc = procs_per_node(training)
    log_path = settings.jobs_dir / job.id / "torchrun.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    attempt = queue.attempt if isinstance(queue, AttemptQueue) else None
    command = torchrun_command(job.id, nproc, worker, os.getpid(), attempt)
    log.info("job %s: %s (log %s)", job.id, " ".join(command[1:]), log_path)
    with open(log_path, "ab") as out:
        # A session of its own, so a Ctrl-C meant for the worker reaches the ranks only as our SIGTERM.
        proc = subprocess.Popen(
            command,
            env=os.environ | settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        rc = _wait(proc, stopping)

    record = queue.get(job.id)
    status = record.status if record else None
    if status == JobStatus.succeeded:
        return Outcome("succeeded", report=queue.report(job.id))
    if status == JobStatus.cancelled:
        return Outcome("cancelled")
    if status == JobStatus.failed:
        return Outcome("failed", error=record.error)
    if status == JobStatus.queued:
        return Outcome("interrupted")
    error = f"the training processes exited with code {rc} without recording an outcome; {_tail(log_path)}"
    fail_if_running(queue, job.id, error)
    return Outcome("failed", error=error)


def _wait(proc: subprocess.Popen, stopping: threading.Event) -> int:
    """Wait for torchrun; when the worker is asked to stop, SIGTERM it (it passes that on to the ranks)."""
    signalled = False
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if stopping.is_set() and not signalled:
                proc.send_signal(signal.SIGTERM)
                signalled = True


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return f"last lines of {path}:\n" + "\n".join(lines)
