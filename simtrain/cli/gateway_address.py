"""Which gateway a command talks to: ``--gateway``, ``SIMTRAIN_GATEWAY_URL``, the running ``simtrain up``, or
the default port. ``up`` leaves its address (and PID) in a state file under the state directory, which is
``var/`` of the folder it was started from unless ``SIMTRAIN_STATE_DIR`` says otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simtrain.cli.output import CliError
from simtrain.client import GatewayClient
from simtrain.settings import Settings

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
UP_FILE = "simtrain-up.json"


def load_settings() -> Settings:
    """The settings from the environment; a bad ``SIMTRAIN_`` variable is named, not a traceback."""
    try:
        return Settings()
    except ValidationError as e:
        wrong = "; ".join(
            f"SIMTRAIN_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in e.errors()
        )
        raise CliError(f"a setting in the environment is invalid: {wrong}") from None


def up_file(settings: Settings | None = None) -> Path:
    return (settings or load_settings()).state_dir / UP_FILE


def write_up_file(path: Path, gateway_url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "gateway": gateway_url}))


def running_up(path: Path) -> dict[str, Any] | None:
    """What the state file says about a running ``simtrain up``, or None (removing a stale file)."""
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"simtrain" not in cmdline.read_bytes():
            raise ProcessLookupError  # the pid was reused by something else
        info["gateway"]  # a file without it is not one `up` wrote
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        pass  # alive, but not ours to signal; report it anyway
    return info


def gateway_url(given: str | None) -> str:
    """The flag, else the environment, else the stack ``simtrain up`` runs from here, else the default."""
    if given:
        return _checked(given, "--gateway")
    if from_env := os.environ.get("SIMTRAIN_GATEWAY_URL"):
        return _checked(from_env, "SIMTRAIN_GATEWAY_URL")
    if running := running_up(up_file()):
        return str(running["gateway"])
    return DEFAULT_GATEWAY


def _checked(url: str, where: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise CliError(f"{where} {url!r} is not a URL: give it as http://HOST:PORT")
    return url


def connect(gateway: str | None, token: str | None) -> GatewayClient:
    return GatewayClient(gateway_url(gateway), token)
