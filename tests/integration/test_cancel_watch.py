"""The cancel watch against a real Redis, and against one that accepts connections but never answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from simtrain.jobs import JobSpec
from simtrain.queue import JobQueue
from trainer_service.cancel_watch import CancelWatch

SPEC = JobSpec.model_validate({"dataset": {"module": "text", "source": "tiny.txt"}})


def test_sees_a_cancel_request(job_queue: JobQueue) -> None:
    job = job_queue.submit(SPEC)
    job_queue.start(job.id, "w1")
    watch = CancelWatch(job_queue, job.id, interval_s=0.02)
    try:
        assert not watch.requested.wait(0.2)
        job_queue.request_cancel(job.id)
        assert watch.requested.wait(5)
    finally:
        watch.close()


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A listening socket that never accepts: connections complete in the kernel, reads never answer."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


def test_close_does_not_wait_out_a_hung_read(silent_redis: str) -> None:
    queue = JobQueue.from_url(silent_redis)  # reads give up after 10 s
    watch = CancelWatch(queue, "0" * 32, interval_s=0.01)
    time.sleep(0.3)  # the watch is now inside a read that cannot finish
    start = time.monotonic()
    watch.close()
    assert time.monotonic() - start < 5
    assert not watch.requested.is_set()
