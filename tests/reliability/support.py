"""What the reliability tests share: worker processes to kill, a Redis to restart, reference weights.

Workers run as real processes (``python -m trainer_service``) with one intra-op thread each, and the
reference runs here with one thread too, so an interrupted job and an uninterrupted one do the same
floating-point work in the same order and must end with equal weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from simtrain.jobs import JobRecord, JobSpec
from simtrain.queue import JobQueue
from simtrain.redis_server import free_port, redis_answers, server_binary
from simtrain.settings import Settings
from tests.integration.trainer_support import job_spec
from trainer_service.checkpoint import load_checkpoint
from trainer_service.job_runner import JobRun

REPO = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(every_s)


def long_spec(address: str, **training: Any) -> JobSpec:
    """A small job that takes a second or two on one core: long enough to be killed mid-way.

    Dropout is on and the schedule is cosine with warmup, so a resume must restore the RNG and the step.
    """
    return job_spec(
        address,
        dropout=0.1,
        **{
            "max_iters": 300,
            "eval_interval": 50,
            "log_interval": 5,
            "lr_schedule": "cosine",
            "warmup_iters": 20,
        }
        | training,
    )


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, like the worker processes, then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reference_weights(settings: Settings, queue: JobQueue, spec: JobSpec) -> dict[str, torch.Tensor]:
    """The final weights of ``spec`` trained here without interruption (a job of its own, kept off the jobs
    stream that workers read)."""
    job = JobQueue(queue.r, f"{queue.prefix}reference:").submit(spec)
    with one_thread():
        JobRun(job, settings, queue, lambda: False).run()
    return final_weights(settings, job.id)


def final_weights(settings: Settings, job_id: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(settings.jobs_dir / job_id / "checkpoint.pt")
    assert state is not None, f"job {job_id} left no checkpoint"
    return state["model"]


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    different = [name for name in want if not torch.equal(got[name], want[name])]
    assert not different, f"weights differ from the uninterrupted run: {different}"


def logged_train_steps(queue: JobQueue, job_id: str) -> list[int]:
    return [int(row["step"]) for row in queue.metrics(job_id) if "train/loss" in row]


@dataclass
class WorkerProcess:
    """``python -m trainer_service`` as a child, with its log in a file."""

    name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    killed_at: float | None = None

    def start(self) -> WorkerProcess:
        env = self.env | {"SIMTRAIN_WORKER_NAME": self.name}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trainer_service"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout_s: float = 60) -> WorkerProcess:
        wait_until(lambda: "started" in self.log() or not self.alive(), timeout_s, f"worker {self.name}")
        assert self.alive(), f"worker {self.name} exited:\n{self.log()}"
        return self

    def kill(self) -> None:
        """SIGKILL: no step finished, no checkpoint, no release. Records when, for the overlap checks."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.killed_at = time.time()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait for the exit code (SIGKILL after ``timeout_s``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class Workers:
    """Starts worker processes sharing one environment and stops every one of them at the end."""

    env: dict[str, str]
    log_dir: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str, wait: bool = True) -> WorkerProcess:
        worker = WorkerProcess(name, self.env, self.log_dir / f"{name}.log").start()
        self.started.append(worker)
        return worker.wait_started() if wait else worker

    def by_name(self) -> dict[str, WorkerProcess]:
        return {w.name: w for w in self.started}

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in self.started)


def worker_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment a worker process reads its settings from: these settings, one torch thread."""
    env = os.environ | {
        "REDIS_URL": settings.redis_url,
        "SIMTRAIN_KEY_PREFIX": settings.key_prefix,
        "SIMTRAIN_DATA_ROOT": str(settings.data_root),
        "SIMTRAIN_STATE_DIR": str(settings.state_dir),
        "SIMTRAIN_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return env | {f"SIMTRAIN_{k.upper()}": str(v) for k, v in extra.items()}


def wait_finished(queue: JobQueue, job_id: str, timeout_s: float) -> JobRecord:
    return wait_until(
        lambda: (r := queue.get(job_id)) is not None and r.status.finished and r, timeout_s, f"job {job_id}"
    )


class RestartableRedis:
    """A private Redis (or Valkey) with an append-only file, on a fixed port, to stop and start again.

    Like Redis in docker compose: ``appendonly yes``, so what was written survives a restart. Every write
    is fsynced (``appendfsync always``) so that a SIGKILL loses nothing either.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="simtrain-aof-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15) -> RestartableRedis:
        binary, _ = server_binary()
        args = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(
            lambda: redis_answers(self.url, 0.2) or self.process.poll() is not None, timeout_s, "redis"
        )
        assert self.process.poll() is None, "redis did not start"
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=30)

    def close(self) -> None:
        self.stop(kill=True)
        self._dir.cleanup()
