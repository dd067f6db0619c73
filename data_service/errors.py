"""Errors a client caused. The server answers them with a status code and the message as written."""

import contextlib
from collections.abc import Iterator


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
