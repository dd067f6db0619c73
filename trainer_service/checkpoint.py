"""Checkpoints: everything needed to continue a job bit-for-bit, written atomically, loaded safely."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` so that a reader sees either the old checkpoint or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """Load with ``weights_only=True``: a checkpoint is data, never code to unpickle."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
