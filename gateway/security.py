"""Bearer-token auth and request-size limits, as plain ASGI middleware so they wrap every route alike.

Both answer in the shared error shape. Neither ever logs a header or a body: the token stays out of logs.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response

# The web page's static shell and the API docs' (Swagger UI, ReDoc) hold no data (they ask for the token
# and send it with every call), so a browser can load them; everything else, the API, the OpenAPI document
# and /metrics, is behind the token.
_OPEN_EXACT = {"/healthz", "/", "/docs", "/redoc", "/datasets"}
_OPEN_PREFIXES = ("/static/", "/jobs/", "/datasets/")


def is_open(path: str) -> bool:
    return path in _OPEN_EXACT or path.startswith(_OPEN_PREFIXES)


def _digest(value: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison constant-time in the token's length as well.
    return hashlib.sha256(value).digest()


class BearerAuth:
    """Refuse, with 401, any request to a closed path without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = _digest(token.encode())

    def _authorized(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, presented = header.partition(b" ")
        # Always compare, even for a wrong scheme, so timing says nothing about which part was wrong.
        match = hmac.compare_digest(_digest(presented.strip()), self._expected)
        return match and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "unauthorized",
            "missing or wrong API token: send the header 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="simtrain"'},
        )
        await response(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised while a body is read, once it passes its limit; the error handlers answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit:,} bytes")
        self.limit = limit


class BodyLimit:
    """Bound request bodies: ``limit`` bytes, or ``upload_limit`` on upload paths.

    A declared Content-Length over the limit is refused before anything is read; a body without one
    (chunked) is counted as it streams and stopped at the limit, so no body is ever held past it.
    """

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int, upload_paths: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in self.upload_paths else self.limit
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            error = BodyTooLarge(limit)
            message = f"{error.detail}: {scope['method']} {scope['path']}"
            await error_response(413, "payload_too_large", message)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
