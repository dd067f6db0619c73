"""What the gateway benchmarks share: a Redis, the gateway as its own process, a lean HTTP load client.

The load client speaks HTTP/1.1 over raw asyncio streams with keep-alive: a full-featured client costs
more CPU per request than the server does, and on a small machine it would measure itself.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simtrain.process import stop_process
from simtrain.redis_server import PrivateRedis, redis_answers

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def redis_url() -> Iterator[str]:
    """REDIS_URL when it answers, else a private server for the run."""
    wanted = os.environ.get("REDIS_URL", "")
    if wanted and redis_answers(wanted):
        yield wanted
        return
    with PrivateRedis() as server:
        yield server.url


@contextmanager
def gateway(redis: str, prefix: str, extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``python -m gateway`` on a free loopback port, as deployed (one uvicorn process); yields host, port."""
    env = (
        os.environ
        | {
            "REDIS_URL": redis,
            "SIMTRAIN_KEY_PREFIX": prefix,
            "SIMTRAIN_GATEWAY_HOST": "127.0.0.1",
            "SIMTRAIN_GATEWAY_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
        | (extra_env or {})
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"listening on http://([\d.]+):(\d+)", line)
            if match:
                break
        else:
            raise RuntimeError("the gateway exited before it listened")
        # Keep reading its output (the access log), or a full pipe would stall the server.
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        yield match.group(1), int(match.group(2))
    finally:
        stop_process(process, 15)


def new_prefix() -> str:
    return f"simtrain-bench:{uuid.uuid4().hex[:8]}:"


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one_client(
    host: str,
    port: int,
    request: bytes,
    expect: int,
    deadline: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != expect:
                errors.append(f"HTTP {status}")
    finally:
        writer.close()


def load(
    host: str, port: int, request: bytes, expect: int, clients: int, duration_s: float
) -> dict[str, float]:
    """``clients`` connections each sending ``request`` back to back for ``duration_s``; latency figures."""
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> None:
        deadline = time.perf_counter() + duration_s
        tasks = [
            _one_client(host, port, request, expect, deadline, latencies, errors) for _ in range(clients)
        ]
        await asyncio.gather(*tasks)

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    return summary(latencies, elapsed) | {"errors": len(errors), "clients": clients}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def summary(seconds: list[float], elapsed_s: float | None = None) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    out = {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(max(ms), 3),
    }
    if elapsed_s:
        out["requests_per_s"] = round(len(ms) / elapsed_s, 1)
    return out
