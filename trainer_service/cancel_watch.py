"""Watch a job's cancel flag from a background thread, so the training loop only reads an Event."""

from __future__ import annotations

import logging
import threading

from simtrain.queue import JobQueue

log = logging.getLogger(__name__)


class CancelWatch:
    """Polls ``queue.cancel_requested`` every ``interval_s``; ``requested`` is set once it is seen."""

    def __init__(self, queue: JobQueue, job_id: str, interval_s: float = 0.5):
        self.requested = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._poll, args=(queue, job_id, interval_s), name="cancel-watch", daemon=True
        )
        self._thread.start()

    def _poll(self, queue: JobQueue, job_id: str, interval_s: float) -> None:
        # One plain read a turn, never a read that waits out a Redis outage: the next turn is the retry,
        # and close() is not held up for longer than one read.
        while not self._done.wait(interval_s):
            try:
                if queue.cancel_requested(job_id):
                    self.requested.set()
                    return
            except Exception as e:  # Redis trouble: the training thread meets it on its own writes
                log.warning("could not read the cancel flag of job %s: %s", job_id, e)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
