"""``simtrain up`` leaves nothing behind: stopped with SIGTERM, with ``simtrain down``, or even killed
outright, every process it started (its private Redis or Valkey included) is gone, checked by PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from simtrain.process import pid_alive
from simtrain.redis_server import redis_answers
from tests.reliability.support import wait_until
from tests.simtrain_up import SIMTRAIN, stack_env, start_up

pytestmark = pytest.mark.timeout(180)
SERVICES = ("data_service", "trainer_service", "trainer_service.generate_server", "gateway")


def children_of(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` (by /proc's parent links), with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = command_line(child)
                frontier.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.parametrize("how", ["sigterm", "down", "sigkill"])
def test_up_leaves_no_process_behind(how: str, tmp_path: Path, key_prefix: str):
    # No Redis given: `up` starts a private one, which must go too.
    no_redis = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SIMTRAIN_REDIS_URL")}
    env = stack_env(no_redis, key_prefix, tmp_path)
    up, lines = start_up(env)
    started: dict[int, str] = {}
    try:
        started.update(children_of(up.pid))
        commands = " ".join(started.values())
        assert all(f"-m {service}" in commands for service in SERVICES), started
        assert re.search(r"(redis|valkey)-server", commands), started
        port = int(re.search(r"private .* on port (\d+)", "".join(lines)).group(1))

        if how == "sigterm":
            up.send_signal(signal.SIGTERM)
        elif how == "down":
            down = subprocess.run(
                [str(SIMTRAIN), "down"], env=env, capture_output=True, text=True, timeout=90
            )
            assert down.returncode == 0, down.stdout + down.stderr
        else:
            up.send_signal(signal.SIGKILL)  # no chance to stop anything: the children must go by themselves
        code = up.wait(timeout=90)
        assert code == (-signal.SIGKILL if how == "sigkill" else 0), "".join(lines)

        wait_until(lambda: not any(pid_alive(pid) for pid in started), 60, f"{started} to exit")
        assert not redis_answers(f"redis://127.0.0.1:{port}/0")
        if how != "sigkill":
            assert not (tmp_path / "var" / "simtrain-up.json").exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for pid in started:  # only on failure: leave nothing running for the next test
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
