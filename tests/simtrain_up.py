"""``simtrain up`` as a child process, for the tests that start and stop the local stack."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

SIMTRAIN = Path(sys.executable).parent / "simtrain"


def stack_env(base: dict[str, str], key_prefix: str, tmp_path: Path) -> dict[str, str]:
    """``base`` plus a private key prefix, state dir and data root, and a console wide enough to parse."""
    return base | {
        "SIMTRAIN_KEY_PREFIX": key_prefix,
        "SIMTRAIN_STATE_DIR": str(tmp_path / "var"),
        "SIMTRAIN_DATA_ROOT": str(tmp_path / "data"),
        "COLUMNS": "200",
    }


def start_up(env: dict[str, str], timeout_s: float = 90) -> tuple[subprocess.Popen, list[str]]:
    """Run ``simtrain up --port 0`` until it says it is ready; its output lines keep arriving in the list.

    On a failed start it is stopped before the AssertionError (with its output) is raised.
    """
    up = subprocess.Popen(
        [str(SIMTRAIN), "up", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(up.stdout), daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not any("ready" in line for line in lines):
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            up.wait()
            raise AssertionError("simtrain up did not get ready:\n" + "".join(lines))
        time.sleep(0.1)
    return up, lines
