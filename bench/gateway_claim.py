"""Benchmark how soon a trainer claims a job: p50/p99 time from POST /v1/jobs to the claim.

Runs Redis and the gateway on loopback, and a stand-in trainer that loops exactly as the worker does
(heartbeat, ``JobQueue.claim`` blocking on the stream, ``start``) but finishes each job at once instead of
training. Jobs are submitted one at a time, a little apart, so each is measured on an idle trainer.
Goal: p50 under 100 ms.

    .venv/bin/python bench/gateway_claim.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from gateway_common import gateway, new_prefix, summary  # noqa: E402

from simtrain.jobs import JobStatus  # noqa: E402
from simtrain.queue import JobQueue  # noqa: E402
from simtrain.redis_server import answering_redis  # noqa: E402

SPEC = {"dataset": {"module": "text", "source": "tiny.txt"}, "training": {"max_iters": 10}}


class StandInTrainer(threading.Thread):
    """The worker's claim loop; records when each job was claimed."""

    def __init__(self, queue: JobQueue) -> None:
        super().__init__(daemon=True)
        self.queue = queue
        self.claimed_at: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        self.queue.ensure_group()
        while not self.stopping.is_set():
            self.queue.heartbeat("bench", ttl_s=30, state="idle")
            claimed = self.queue.claim("bench", block_ms=1000)
            if claimed is None:
                continue
            msg_id, job_id = claimed
            self.claimed_at[job_id] = time.time()
            self.queue.start(job_id, "bench")
            self.queue.finish(job_id, JobStatus.succeeded)
            self.queue.ack(msg_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between submits")
    args = parser.parse_args()

    prefix = new_prefix()
    with answering_redis(os.environ.get("REDIS_URL")) as redis, gateway(redis, prefix) as (host, port):
        queue = JobQueue.from_url(redis, prefix)
        trainer = StandInTrainer(queue)
        trainer.start()
        submitted: dict[str, float] = {}
        with httpx.Client(base_url=f"http://{host}:{port}") as client:
            client.get("/healthz")  # connect first: measure the submit, not the TCP handshake
            for _ in range(args.jobs):
                started = time.time()
                job_id = client.post("/v1/jobs", json=SPEC).json()["id"]
                submitted[job_id] = started
                time.sleep(args.gap)
        deadline = time.monotonic() + 10
        while len(trainer.claimed_at) < len(submitted) and time.monotonic() < deadline:
            time.sleep(0.05)
        trainer.stopping.set()
        trainer.join(timeout=5)
        waits = [trainer.claimed_at[j] - t for j, t in submitted.items() if j in trainer.claimed_at]
        keys = list(queue.r.scan_iter(f"{prefix}*", count=10_000))
        if keys:
            queue.r.delete(*keys)

    stats = summary(waits)
    result = {
        "benchmark": "submit_to_claimed",
        "jobs": args.jobs,
        "claimed": len(waits),
        "cpus": os.cpu_count(),
        "submit_to_claimed": stats,
        "goal": {"p50_ms": 100.0, "met": stats["p50_ms"] < 100.0 and len(waits) == args.jobs},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
