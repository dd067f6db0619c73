"""Stopping child processes the same way everywhere: SIGTERM, a grace period, then SIGKILL."""

import signal
import subprocess


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
