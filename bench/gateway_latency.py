"""Benchmark the gateway's two busiest calls: p50/p99 latency of GET /v1/jobs/{id} and POST /v1/jobs.

Runs Redis and the gateway (``python -m gateway``, one process, as deployed) on loopback, then drives
each call from ``--clients`` concurrent keep-alive connections for ``--duration`` seconds and prints
one JSON document. Goal: p99 of GET under 15 ms.

    .venv/bin/python bench/gateway_latency.py [--clients 50] [--duration 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from gateway_common import gateway, load, new_prefix, request_bytes  # noqa: E402

from simtrain.queue import JobQueue  # noqa: E402
from simtrain.redis_server import answering_redis  # noqa: E402

SPEC = {
    "dataset": {"module": "text", "source": "tiny.txt"},
    "model": {"model_type": "gpt-nano"},
    "training": {"max_iters": 300, "batch_size": 32, "block_size": 64},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per call")
    args = parser.parse_args()

    prefix = new_prefix()
    with answering_redis(os.environ.get("REDIS_URL")) as redis, gateway(redis, prefix) as (host, port):
        base = f"http://{host}:{port}"
        job_id = httpx.post(f"{base}/v1/jobs", json=SPEC).json()["id"]
        body = json.dumps(SPEC).encode()
        get = load(host, port, request_bytes("GET", f"/v1/jobs/{job_id}"), 200, args.clients, args.duration)
        post = load(host, port, request_bytes("POST", "/v1/jobs", body), 202, args.clients, args.duration)
        queue = JobQueue.from_url(redis, prefix)
        keys = list(queue.r.scan_iter(f"{prefix}*", count=10_000))
        for i in range(0, len(keys), 10_000):
            queue.r.delete(*keys[i : i + 10_000])

    result = {
        "benchmark": "gateway_latency",
        "clients": args.clients,
        "duration_s_per_call": args.duration,
        "cpus": os.cpu_count(),
        "get_job": get,
        "submit_job": post,
        "goal": {"get_p99_ms": 15.0, "met": get["p99_ms"] < 15.0 and get["errors"] == 0},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
