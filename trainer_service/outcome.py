"""How a job run ended, as one value, and how that is written to the job record.

The in-process worker and every torchrun rank use the same two functions, so a job reads the same in
Redis whichever way it ran.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue, LeaseLost
from trainer_service.data_client import DataServiceError
from trainer_service.parallel import RemoteError

log = logging.getLogger(__name__)


class JobInterrupted(Exception):
    """The worker was asked to stop; the job was checkpointed and should run again elsewhere."""


class JobCancelled(Exception):
    """The job's owner cancelled it; the last step was checkpointed."""


@dataclass
class Outcome:
    # lost: a newer attempt took the job over (this one's lease ran out); it records nothing.
    status: Literal["succeeded", "failed", "cancelled", "interrupted", "lost"]
    error: str | None = None
    report: dict[str, Any] | None = None
    from_rank0: bool = False  # a failure rank 0 had, seen on another rank: rank 0 records it


def run_to_outcome(job_id: str, run: Callable[[], dict[str, Any] | None]) -> Outcome:
    """Run a job and turn however it ends into an :class:`Outcome`: nothing a job does escapes as an error."""
    try:
        report = run()
    except JobCancelled as e:
        log.info("job %s cancelled: %s", job_id, e)
        return Outcome("cancelled")
    except JobInterrupted as e:
        log.info("job %s interrupted: %s", job_id, e)
        return Outcome("interrupted")
    except LeaseLost as e:
        log.warning("%s", e)
        return Outcome("lost", error=str(e))
    except (redis.ConnectionError, redis.TimeoutError) as e:
        # Redis stayed away longer than the writes wait for: not the job's fault, so run it again.
        log.warning("job %s interrupted: redis unavailable (%s)", job_id, e)
        return Outcome("interrupted", error=f"redis unavailable: {e}")
    except RemoteError as e:
        return Outcome("failed", error=str(e), from_rank0=True)
    except DataServiceError as e:
        log.error("job %s failed: %s", job_id, e)
        return Outcome("failed", error=str(e))
    except Exception as e:  # a job must fail with a reason, never take the worker down
        error = f"{type(e).__name__}: {e}"
        log.exception("job %s failed: %s", job_id, error)
        return Outcome("failed", error=error)
    return Outcome("succeeded", report=report)


def record_outcome(queue: JobQueue, job_id: str, outcome: Outcome) -> None:
    """Write the outcome to the job record. An interrupted job goes back to ``queued``, to run again.

    A failure is written only while the job still runs: with several ranks, the first one to fail has the
    message worth reading, and the others' (a broken collective, say) must not overwrite it.
    """
    if outcome.status == "succeeded":
        queue.set_report(job_id, outcome.report or {})
        queue.finish(job_id, JobStatus.succeeded)
    elif outcome.status == "cancelled":
        queue.finish(job_id, JobStatus.cancelled, None)
    elif outcome.status == "interrupted":
        queue.requeue(job_id)
    elif outcome.status == "lost":
        pass  # the newer attempt owns the record now
    else:
        fail_if_running(queue, job_id, outcome.error or "failed")


def fail_if_running(queue: JobQueue, job_id: str, error: str) -> bool:
    """Mark a running job failed, atomically with the check; False when it was no longer running."""
    return queue.fail_if_running(job_id, error)
