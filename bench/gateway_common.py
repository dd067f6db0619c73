"""What the gateway benchmarks share: a Redis, the gateway as its own process, a lean HTTP load client.

The load client speaks HTTP/1.1 with keep-alive from asyncio protocols on uvloop: a full-featured client
costs more CPU per request than the server does, and on a small machine it would measure itself.
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
from typing import cast

import uvloop

from simtrain.process import stop_process

REPO = Path(__file__).resolve().parent.parent


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
        # Keep reading its output (the access log), or a full pipe would stall the server; in large reads,
        # not line by line, so that this thread costs the load client next to nothing.
        threading.Thread(target=_drain, args=(process.stdout.fileno(),), daemon=True).start()
        yield match.group(1), int(match.group(2))
    finally:
        stop_process(process, 15)


def _drain(fd: int) -> None:
    while os.read(fd, 1 << 16):
        pass


def new_prefix() -> str:
    return f"simtrain-bench:{uuid.uuid4().hex[:8]}:"


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class _Client(asyncio.Protocol):
    """One keep-alive connection, closed loop: the next request goes out once the whole response is in.

    A protocol parses the bytes as they arrive, with no reader tasks to wake: the cheapest client
    asyncio has, so the figures are the server's, not the client's.
    """

    def __init__(
        self, request: bytes, expect: int, deadline: float, latencies: list[float], errors: list[str]
    ) -> None:
        self.request, self.expect, self.deadline = request, expect, deadline
        self.latencies, self.errors = latencies, errors
        self.buffer = bytearray()
        self.started = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._send()

    def _send(self) -> None:
        if time.perf_counter() >= self.deadline:
            self.transport.close()
            return
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        length = _CONTENT_LENGTH.search(self.buffer, 0, head_end)
        end = head_end + 4 + (int(length.group(1)) if length else 0)
        if len(self.buffer) < end:
            return
        self.latencies.append(time.perf_counter() - self.started)
        status = int(self.buffer[9:12])
        if status != self.expect:
            self.errors.append(f"HTTP {status}")
        del self.buffer[:end]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.perf_counter() < self.deadline:
            self.errors.append(f"connection lost: {exc}")
        self.done.set_result(None)


def load(
    host: str, port: int, request: bytes, expect: int, clients: int, duration_s: float
) -> dict[str, float]:
    """``clients`` connections each sending ``request`` back to back for ``duration_s``; latency figures.

    ``client_cpu_us_per_request`` is what the client itself spent per request (this process's CPU time).
    """
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + duration_s
        connections = [
            await loop.create_connection(
                lambda: _Client(request, expect, deadline, latencies, errors), host, port
            )
            for _ in range(clients)
        ]
        await asyncio.gather(*(protocol.done for _, protocol in connections))

    cpu, started = time.process_time(), time.perf_counter()
    uvloop.run(run())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    out = summary(latencies, elapsed) | {"errors": len(errors), "clients": clients}
    return out | {"client_cpu_us_per_request": round(cpu / max(1, len(latencies)) * 1e6, 1)}


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
