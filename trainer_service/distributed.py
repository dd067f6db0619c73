"""One rank of a multi-process job: ``torchrun ... -m trainer_service.distributed --job-id ID``.

torchrun starts one of these per GPU (or per CPU process, over gloo) on each node. Settings (Redis, the
data service, the state directory) come from the environment as for every service.

Launched by a worker (``--worker``), the worker already marked the job running and holds its lease.
Launched directly (a Kubernetes PyTorchJob, or by hand), rank 0 does that bookkeeping itself. Either way
the ranks record the outcome: rank 0 the report and the final status, a rank that fails first its error.
SIGTERM (from torchrun, the worker, or Kubernetes) stops every rank at the next step they all log, with a
checkpoint, and the job goes back to ``queued``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
import threading
from datetime import timedelta

import torch
import torch.distributed as dist

from simtrain.fencing import AttemptQueue
from simtrain.jobs import JobRecord
from simtrain.process import pid_alive
from simtrain.queue import Attempt, JobQueue
from simtrain.settings import Settings
from trainer_service.job_log import job_log
from trainer_service.job_runner import JobRun
from trainer_service.outcome import Outcome, record_outcome, run_to_outcome
from trainer_service.parallel import Ranks, on_main

log = logging.getLogger("trainer_service.distributed")

# Long enough for rank 0's evaluation, checkpoint and report while the others wait at a collective.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer_service.distributed", description=__doc__)
    parser.add_argument("--job-id", required=True, help="the job to run (its record is in Redis)")
    parser.add_argument("--worker", help="the worker that launched this run and holds the job's lease")
    parser.add_argument("--worker-pid", type=int, help="stop (with a checkpoint) if this process dies")
    parser.add_argument("--attempt", type=int, help="the attempt the worker began: it fences every write")
    return parser.parse_args(argv)


class StopFlag:
    """Set by SIGTERM/SIGINT, or when the launching worker is gone; read at the ranks' sync steps."""

    def __init__(self, worker_pid: int | None) -> None:
        self.event = threading.Event()
        self.worker_pid = worker_pid
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.event.set())

    def __call__(self) -> bool:
        if self.worker_pid is not None and not pid_alive(self.worker_pid):
            self.event.set()
        return self.event.is_set()


def claim(queue: JobQueue, job: JobRecord, settings: Settings) -> Attempt:
    """Rank 0 without a worker: begin an attempt (counted, the job marked running), or say why not."""
    return queue.begin_attempt(job.id, f"torchrun@{socket.gethostname()}", settings.max_attempts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ranks = Ranks.from_env()
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s rank {ranks.rank} %(name)s %(levelname)s %(message)s"
    )
    settings = Settings()
    queue = JobQueue.from_url(settings.redis_url, settings.key_prefix, settings.lease_ms)
    stop = StopFlag(args.worker_pid)
    job = queue.get(args.job_id)
    if job is None:
        log.error("no job %s under %s", args.job_id, settings.key_prefix)
        return 2

    training = job.spec.training
    if training.gpus > 0:
        torch.cuda.set_device(ranks.local_rank)  # before NCCL comes up, so each rank owns its GPU
    if ranks.distributed:
        backend = "nccl" if training.gpus > 0 else "gloo"
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        attempt = args.attempt
        if args.worker is None:
            begun = on_main(ranks, lambda: claim(queue, job, settings))
            if begun.number is None:
                log.info("not running: %s", begun.reason)
                return 0
            attempt = begun.number
        if attempt is not None:  # every write for this attempt is refused once a newer one owns the job
            queue = AttemptQueue(queue, job.id, attempt, settings.redis_outage_s)
        job = queue.get(args.job_id) or job
        with job_log(queue, job.id, settings) if ranks.is_main else contextlib.nullcontext():
            outcome = run_to_outcome(job.id, lambda: JobRun(job, settings, queue, stop, ranks).run())
        if ranks.is_main:
            record_outcome(queue, job.id, outcome)
        elif outcome.status == "failed" and not outcome.from_rank0:
            # This rank failed on its own (its data shard, its GPU): say why, unless another rank already did.
            record_outcome(queue, job.id, Outcome("failed", error=f"rank {ranks.rank}: {outcome.error}"))
        return 1 if outcome.status == "failed" else 0
    finally:
        if ranks.distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
