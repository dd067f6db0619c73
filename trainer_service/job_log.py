"""A job's own log: what the trainer logs while working a job, kept in Redis for the job's owner to read.

While a run lasts (on rank 0), every line the trainer's loggers (``trainer_service.*``) write at INFO or
above goes to the job's log (:meth:`simtrain.queue.JobQueue.append_log`). Only lines logged in the run's
context count: its thread, and threads it starts in that context (the batch prefetcher), so two jobs run
side by side in one process keep their lines apart. A line names no server folder: the job's owner reads
``checkpoint.pt``, not where the trainer keeps it. A line logged with ``extra=SERVER_ONLY`` stays out.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

import redis

from simtrain.queue import JobQueue
from simtrain.settings import Settings

TRAINER_LOGGER = "trainer_service"

SERVER_ONLY = {"job_log": False}  # ``extra`` for a line meant for the operator, not the job's owner

_running_job: ContextVar[str | None] = ContextVar("running_job", default=None)


def in_user_words(message: str, folders: dict[Path, str]) -> str:
    """``message`` without the server's ``folders``: a path inside one loses the folder, the folder itself
    becomes its name for users (an absolute path only, so a relative ``var`` leaves "variable" alone)."""
    spellings: dict[str, str] = {}
    for folder, name in folders.items():
        for spelled in (folder, folder.resolve()):
            if str(spelled) != ".":
                spellings[str(spelled)] = name
    for spelled in sorted(spellings, key=len, reverse=True):
        message = message.replace(spelled + os.sep, "")
        if os.path.isabs(spelled):
            message = message.replace(spelled, spellings[spelled])
    return message


class JobLogHandler(logging.Handler):
    """Appends the lines logged in the job's context to its log; a line Redis cannot take is dropped."""

    def __init__(self, queue: JobQueue, job_id: str, folders: dict[Path, str]):
        super().__init__(logging.INFO)
        self.queue = queue
        self.job_id = job_id
        self.folders = folders

    def emit(self, record: logging.LogRecord) -> None:
        if _running_job.get() != self.job_id or not getattr(record, "job_log", True):
            return
        message = in_user_words(record.getMessage(), self.folders)
        try:
            self.queue.append_log(self.job_id, record.levelname, message, at=record.created)
        except redis.RedisError:
            pass  # Redis is away: the job pauses at its next write of state, not for a log line


@contextlib.contextmanager
def job_log(queue: JobQueue, job_id: str, settings: Settings) -> Iterator[None]:
    """Keep the trainer's lines about job ``job_id`` in its log while the block runs."""
    folders = {
        settings.jobs_dir / job_id: "the job's folder",
        settings.state_dir: "the trainer's state folder",
        settings.data_root: "the data root",
    }
    handler = JobLogHandler(queue, job_id, folders)
    logger = logging.getLogger(TRAINER_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)  # a job's log has its INFO lines however the process logs
    running = _running_job.set(job_id)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        _running_job.reset(running)
