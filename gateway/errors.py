"""One JSON error shape for every failure, so a client reads any error the same way.

Every error body is ``{"error": {"code": ..., "message": ..., "details": [...]}}``: ``code`` is for
programs, ``message`` for people, ``details`` lists specifics (for a validation error, one entry per field).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

# The failures that mean the job store is down (a 503), not that the gateway is broken (a 500).
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class ErrorInfo(BaseModel):
    code: str = Field(description="For programs: `validation_error`, `not_found`, `unauthorized`, ...")
    message: str = Field(description="For people: what went wrong and, where it helps, what to do.")
    details: list[dict[str, Any]] = Field(description="Specifics; for a validation error, one per field.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorInfo

    model_config = {
        "json_schema_extra": {
            "example": {
                "error": {
                    "code": "validation_error",
                    "message": "invalid request: training.max_iters: Input should be greater than or equal "
                    "to 1",
                    "details": [
                        {
                            "field": "training.max_iters",
                            "in": "body",
                            "message": "Input should be greater than or equal to 1",
                            "type": "greater_than_equal",
                        }
                    ],
                }
            }
        }
    }


def error_doc(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for an error status, with the shared body."""
    return {"model": ErrorBody, "description": description}


class ApiError(Exception):
    """An error the gateway reports on purpose: status, a stable code, and a message a person can act on."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.details)


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


def _malformed_body(reason: str) -> dict[str, Any]:
    return {"field": "body", "in": "body", "message": f"malformed JSON: {reason}", "type": "json_invalid"}


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """One entry per failed field, named by its dotted path inside the body (or query, or path)."""
    details = []
    for err in exc.errors():
        where, *path = err["loc"]
        if err["type"] == "json_invalid":
            # FastAPI puts the character offset where the field path would be.
            details.append(_malformed_body(f"{err['ctx']['error']} at character {path[0]}"))
            continue
        details.append(
            {
                "field": ".".join(str(part) for part in path) or where,
                "in": where,
                "message": err["msg"].removeprefix("Value error, "),
                "type": err["type"],
            }
        )
    return details


def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


def _invalid(details: list[dict[str, Any]]) -> JSONResponse:
    message = "invalid request: " + "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return error_response(422, "validation_error", message, details)


def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _invalid(_field_errors(exc))


def _unparsable(cause: BaseException | None) -> str | None:
    """Why FastAPI could not parse a body it then answers 400 for; to a client that is malformed JSON too."""
    if isinstance(cause, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(cause, RecursionError):
        return "nested too deeply"
    if isinstance(cause, ValueError):  # JSON errors are caught before: this is Python's limit on digits
        return "a number with too many digits"
    return None


def _on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    reason = _unparsable(exc.__cause__)
    if reason is not None:
        return _invalid([_malformed_body(reason)])
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = f"{exc.detail}: {request.method} {request.url.path}"
    return error_response(exc.status_code, code, message, headers=exc.headers)


def redis_down(exc: redis.RedisError) -> JSONResponse:
    """The 503 for a job store that does not answer (also sent by :mod:`gateway.job_reads`)."""
    log.warning("redis unavailable: %s", exc)
    message = "the job store (Redis) is unreachable; try again shortly"
    details = [{"dependency": "redis", "reason": type(exc).__name__}]
    return error_response(503, "dependency_unavailable", message, details, headers={"Retry-After": "5"})


def _on_redis_down(request: Request, exc: redis.RedisError) -> JSONResponse:
    return redis_down(exc)


def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The server still logs the traceback; the client gets the usual shape, not an HTML page. Starlette then
    # re-raises and uvicorn closes the connection: saying so keeps a client from sending its next request
    # down a connection that is closing.
    message = "internal error; the gateway log has the details"
    return error_response(500, "internal_error", message, headers={"Connection": "close"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    for exc in REDIS_DOWN:
        app.add_exception_handler(exc, _on_redis_down)
    app.add_exception_handler(Exception, _on_unexpected)
