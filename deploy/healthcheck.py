"""Container health checks: ``python healthcheck.py SERVICE`` exits 0 when the service is healthy.

Each check reads the same settings as the service it checks, so it probes the port that service
listens on (from inside the container, over loopback):

- gateway: ``GET /healthz`` answers 200;
- data-service: the standard gRPC health service reports SERVING;
- trainer: Redis, where its jobs come from, answers PING (the worker itself is the container's
  main process, so the container stops when it does);
- generate-server: this host's generate server has a live heartbeat in Redis (it renews it every
  second between requests, so a server stuck or cut off from Redis turns unhealthy).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from simtrain.settings import Settings

TIMEOUT_S = 3.0


def check_gateway(settings: Settings) -> str | None:
    url = f"http://127.0.0.1:{settings.gateway_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            status = reply.status
    except (urllib.error.URLError, OSError) as e:
        return f"{url}: {e}"
    return None if status == 200 else f"{url}: HTTP {status}"


def check_data_service(settings: Settings) -> str | None:
    address = f"127.0.0.1:{settings.data_service_port}"
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
            )
        except grpc.RpcError as e:
            return f"{address}: {e.code().name} {e.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def check_trainer(settings: Settings) -> str | None:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=TIMEOUT_S)
    try:
        client.ping()
    except redis.RedisError as e:
        return f"redis: {e}"
    finally:
        client.close()
    return None


def check_generate_server(settings: Settings) -> str | None:
    from simtrain.generate_queue import GenerateQueue

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=TIMEOUT_S, decode_responses=True)
    queue = GenerateQueue(client, settings.key_prefix)
    # The server's name is SIMTRAIN_WORKER_NAME (Kubernetes: the pod's, its hostname) or host-pid.
    name = settings.worker_name or socket.gethostname()
    try:
        alive = [s for s in queue.servers() if s.startswith(name)]
    except redis.RedisError as e:
        return f"redis: {e}"
    finally:
        client.close()
    return None if alive else f"no heartbeat of generate server {name} in Redis"


CHECKS: dict[str, Callable[[Settings], str | None]] = {
    "gateway": check_gateway,
    "data-service": check_data_service,
    "trainer": check_trainer,
    "generate-server": check_generate_server,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {{{'|'.join(CHECKS)}}}", file=sys.stderr)
        return 2
    problem = CHECKS[argv[0]](Settings())
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
