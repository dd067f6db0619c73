"""The data module interface, and the one place a client-given source becomes a path on disk."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from data_service.errors import DataError, NotFoundError


@dataclass(frozen=True)
class Option:
    """One module option, as ListModules shows it. Values travel as strings."""

    name: str
    description: str
    default: str


class DataModule(ABC):
    """Turns one source under the data root into documents (strings).

    More modules plug in through the ``simtrain.data_modules`` entry-point group.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()

    @abstractmethod
    def read(self, path: Path, options: Mapping[str, str]) -> list[str]:
        """The documents in the source at ``path``, already resolved inside the data root.

        Raise DataError (or NotFoundError) with a message that names the file and the reason.
        """

    def fingerprint(self, path: Path) -> str:
        """sha256 of the source bytes: the part of a dataset id that says which data it came from."""
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()


def resolve_source(data_root: Path, source: str) -> Path:
    """The real path of ``source``, refusing anything that is not inside the data root.

    Clients name sources remotely, so absolute paths, ``..`` and symlinks that lead out are refused.
    """
    if not source:
        raise DataError("source is empty: name a file relative to the data root")
    if "\0" in source:
        raise DataError(f"source {source!r} contains a NUL character")
    if Path(source).is_absolute():
        raise DataError(f"source {source!r} is an absolute path: name it relative to the data root")
    root = data_root.resolve()
    path = (root / source).resolve()
    if not path.is_relative_to(root):
        if Path(os.path.normpath(root / source)).is_relative_to(root):
            raise DataError(f"source {source!r} is outside the data root: a symbolic link leads out of it")
        raise DataError(f"source {source!r} is outside the data root: '..' climbs out of it")
    if not path.exists():
        raise NotFoundError(f"source {source!r} not found in the data root {data_root}")
    return path
