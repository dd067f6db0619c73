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
        # One plain read a turn, never a read that waits out a Redis outage: the next turn is the retry.
        while not self._done.wait(interval_s):
            try:
                cancelled = queue.cancel_requested(job_id)
            except Exception as e:  # Redis trouble: the training thread meets it on its own writes
                if not self._done.is_set():
                    log.warning("could not read the cancel flag of job %s: %s", job_id, e)
                continue
            if cancelled and not self._done.is_set():
                self.requested.set()
                return

    def close(self) -> None:
        """Stop polling without waiting out a read in flight (up to the socket timeout on a hung Redis).

        The thread is a daemon; a read that ends after close() changes nothing.
        """
        self._done.set()
        self._thread.join(timeout=0.1)
