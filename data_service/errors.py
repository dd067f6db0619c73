"""Errors a client caused. The server answers them with a status code and the message as written."""

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


class DataError(Exception):
    """A request or a source is wrong in a way the client can fix (INVALID_ARGUMENT).

    ``field`` names the request field at fault, where one is, so a caller can point at it.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@contextlib.contextmanager
def blame(field: str) -> Iterator[None]:
    """Name ``field`` as the one at fault in a DataError raised inside (unless it names one already)."""
    try:
        yield
    except DataError as e:
        e.field = e.field or field
        raise


class NotFoundError(DataError):
    """The thing named does not exist: a source file, a dataset (NOT_FOUND)."""


class PreconditionError(DataError):
    """The request is well formed, but the dataset cannot serve it as prepared (FAILED_PRECONDITION)."""


def without_server_paths(message: str, roots: Iterable[Path]) -> str:
    """``message`` with the server's own folders taken out: a client names files relative to the data
    root and never sees where that root lies (``/srv/data/notes.txt`` → ``notes.txt``)."""
    spellings = {str(spelled) for root in roots for spelled in (root, root.resolve()) if str(spelled) != "."}
    for root in sorted(spellings, key=len, reverse=True):
        message = message.replace(root + os.sep, "").replace(root, "the data root")
    return message
