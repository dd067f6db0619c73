"""No orphans: a child started through :func:`guarded` is sent SIGTERM when the process that started it dies.

``simtrain up`` stops its services itself on SIGTERM, Ctrl-C or ``simtrain down``; but if it is killed
outright (SIGKILL, the OOM killer) it cannot, and its children (each in a session of its own) would live on,
holding ports and a Redis. Linux can deliver a signal to a process when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); that must be set in the child, so the child command is started through this
small launcher: it sets the signal, checks the parent is still there (it may have died already), then
replaces itself with the real command, which keeps the setting. Elsewhere than Linux it only executes it.

    python -m simtrain.orphans <parent pid> <command> [args...]
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def guarded(command: list[str], parent_pid: int | None = None) -> list[str]:
    """``command``, run so that it gets SIGTERM when ``parent_pid`` (default: this process) dies."""
    pid = os.getpid() if parent_pid is None else parent_pid
    return [sys.executable, "-m", "simtrain.orphans", str(pid), *command]


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the signal was set up
        sys.exit(1)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m simtrain.orphans <parent pid> <command> [args...]")
    _die_with_parent(int(argv[0]))
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
