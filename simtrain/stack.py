"""The local stack: Redis, the data service, one trainer worker, the generate server (which answers "ask the
model") and the gateway as child processes.

``simtrain up`` and ``simtrain demo`` use it, and so does the end-to-end test. Children run in their
own sessions so Ctrl-C reaches only us; we then stop them in reverse order, each with SIGTERM first.
Each child, the private Redis included, is started through ``simtrain.orphans`` so that it gets SIGTERM
if we die without stopping it (killed outright): nothing is left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from simtrain.orphans import guarded
from simtrain.process import stop_process
from simtrain.redis_server import PrivateRedis, redis_answers
from simtrain.settings import Settings

LISTENING = re.compile(r"listening on (?:http://)?(\S+)")


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class StackError(RuntimeError):
    pass


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class LocalStack:
    def __init__(self, settings: Settings, gateway_port: int | None = None, log_dir: Path | None = None):
        self.settings = settings
        self.gateway_port = settings.gateway_port if gateway_port is None else gateway_port
        self.log_dir = log_dir or settings.state_dir / "logs"
        self.children: list[Child] = []
        self.redis: PrivateRedis | None = None
        self.redis_url = ""
        self.redis_kind = ""
        self.data_service_addr = ""
        self.gateway_url = ""

    def start(self) -> LocalStack:
        try:
            self._start_redis()
            env = self._child_env()
            data = self._spawn("data_service", env | {"SIMTRAIN_DATA_SERVICE_PORT": "0"})
            self.data_service_addr = self._wait_listening(data)
            env["SIMTRAIN_DATA_SERVICE_ADDR"] = self.data_service_addr
            worker = self._spawn("trainer_service", env)
            self._wait_for(worker, "started")
            generate = self._spawn("trainer_service.generate_server", env)
            self._wait_for(generate, "started")
            gateway = self._spawn("gateway", env | {"SIMTRAIN_GATEWAY_PORT": str(self.gateway_port)})
            self.gateway_url = "http://" + self._wait_listening(gateway)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        wanted = os.environ.get("REDIS_URL") or os.environ.get("SIMTRAIN_REDIS_URL")
        if wanted and redis_answers(wanted):
            self.redis_url, self.redis_kind = wanted, f"existing Redis at {redact_url(wanted)}"
            return
        self.redis = PrivateRedis(guard_parent=True)  # held before it starts, so stop() always finds it
        self.redis.start()
        self.redis_url = self.redis.url
        self.redis_kind = f"private {self.redis.kind} on port {self.redis.port}"

    def _child_env(self) -> dict[str, str]:
        return os.environ | {
            "REDIS_URL": self.redis_url,
            "SIMTRAIN_KEY_PREFIX": self.settings.key_prefix,
            "SIMTRAIN_DATA_ROOT": str(self.settings.data_root.resolve()),
            "SIMTRAIN_STATE_DIR": str(self.settings.state_dir.resolve()),
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(self, module: str, env: dict[str, str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{module.rsplit('.', 1)[-1]}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                guarded([sys.executable, "-m", module]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(module, process, log_path)
        self.children.append(child)
        return child

    def _wait_for(self, child: Child, marker: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in child.log_tail(200).splitlines():
                if marker in line:
                    return line
            if child.process.poll() is not None:
                raise StackError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
            time.sleep(0.05)
        raise StackError(f"{child.name} did not start within {timeout_s:.0f}s:\n{child.log_tail()}")

    def _wait_listening(self, child: Child) -> str:
        match = LISTENING.search(self._wait_for(child, "listening on"))
        assert match, "the listening line always carries an address"
        return match.group(1)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM each child, newest first; SIGKILL any that outlive ``timeout_s``."""
        for child in reversed(self.children):
            stop_process(child.process, timeout_s)
        self.children.clear()
        if self.redis:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
