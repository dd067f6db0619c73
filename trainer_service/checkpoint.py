"""Checkpoints: everything needed to continue a job bit-for-bit, written atomically, loaded safely.

A checkpoint file can come from anywhere a job directory can (a shared volume, a download put back), so it
is read as data only: ``torch.load(weights_only=True)`` unpickles tensors and plain containers and refuses
any other object, so a crafted file cannot run code. A file that is not a checkpoint is refused with
:class:`CheckpointError`, which names it.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unsafe (holds code or arbitrary objects) or corrupt."""


def save_checkpoint(
    path: Path, state: dict[str, Any], before_replace: Callable[[], None] | None = None
) -> None:
    """Write ``state`` so that a reader sees either the old checkpoint or the new one, never half.

    ``before_replace`` runs after the new file is safely on disk and just before it replaces the old one;
    if it raises (the writer's attempt no longer owns the job), the old checkpoint stays.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None when there is none), loaded as data, never as code."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is refused: it holds objects other than tensors and plain data, which loading would "
            f"have to run code for ({first})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(state).__name__}, not a dict")
    return state
