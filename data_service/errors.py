"""Errors a client caused. The server answers them with a status code and the message as written."""


class DataError(Exception):
    """A request or a source is wrong in a way the client can fix (INVALID_ARGUMENT)."""


class NotFoundError(DataError):
    """The thing named does not exist: a source file, a dataset (NOT_FOUND)."""


class PreconditionError(DataError):
    """The request is well formed, but the dataset cannot serve it as prepared (FAILED_PRECONDITION)."""
