"""Stopping child processes the same way everywhere: SIGTERM, a grace period, then SIGKILL."""

import os
import signal
import subprocess
from pathlib import Path


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """Stop ``process`` gracefully if it is still running; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (a zombie has exited; only its status waits)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but another user's
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc here: kill(0) is the best answer there is
