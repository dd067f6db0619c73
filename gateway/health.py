"""Liveness and readiness: ``/healthz`` says the process runs, ``/readyz`` that its dependencies answer."""

from __future__ import annotations

import grpc
import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.errors import error_response

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 1.0


def redis_down(client: redis.Redis) -> str | None:
    """Why Redis does not answer PING, or None when it does."""
    try:
        client.ping()
    except redis.RedisError as e:
        return f"{type(e).__name__}: {e}"
    return None


def grpc_down(address: str) -> str | None:
    """Why the server at ``address`` is not SERVING by the standard gRPC health check, or None."""
    # A fresh channel per probe, so a recovered server is seen at once, not after reconnect backoff.
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_S)
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"health status {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


@router.get("/healthz", summary="Liveness: the process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis and the default data service answer",
    responses={503: {"description": "A dependency is down; the body names it"}},
)
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    address = state.settings.data_service_addr
    checks = [
        {"dependency": "redis", "reason": redis_down(state.redis_probe)},
        {"dependency": "data_service", "address": address, "reason": grpc_down(address)},
    ]
    for check in checks:
        check["ok"] = check["reason"] is None
    down = [c["dependency"] for c in checks if not c["ok"]]
    if down:
        return error_response(503, "dependency_unavailable", f"not ready: {', '.join(down)} down", checks)
    return JSONResponse({"status": "ready", "checks": checks})
