"""Redis crashes and comes back (with its append-only file, as in docker compose and Kubernetes).

The gateway answers 503 with a JSON error while Redis is away and serves again by itself once it is back;
a worker rides out the outage and the job it was training finishes, with the weights of an untroubled run.
Both use a private Redis started here, never a shared one: the test kills it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.app import create_app
from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import error_of, serve
from tests.integration.trainer_support import DataService
from tests.reliability.support import (
    RestartableRedis,
    Workers,
    assert_same_weights,
    final_weights,
    logged_train_steps,
    long_spec,
    reference_weights,
    wait_finished,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def private_redis() -> Iterator[RestartableRedis]:
    server = RestartableRedis().start()
    yield server
    server.close()


def test_gateway_answers_503_while_redis_is_down_and_recovers_by_itself(
    settings: Settings, data_service: DataService, private_redis: RestartableRedis
):
    app_settings = settings.model_copy(
        update={"redis_url": private_redis.url, "data_service_addr": data_service.address}
    )
    spec = long_spec(data_service.address).model_dump(mode="json")
    with serve(create_app(app_settings)) as client:
        job_id = client.post("/v1/jobs", json=spec).json()["id"]
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200

        private_redis.stop(kill=True)
        for response in (
            client.get(f"/v1/jobs/{job_id}"),
            client.get("/v1/jobs"),
            client.post("/v1/jobs", json=spec),
            client.get(f"/v1/jobs/{job_id}/metrics"),
            client.post(f"/v1/jobs/{job_id}/cancel"),
        ):
            error = error_of(response, 503)
            assert error["code"] == "dependency_unavailable" and "Redis" in error["message"]
            assert response.headers["retry-after"]
        assert "redis" in error_of(client.get("/readyz"), 503)["message"]
        assert client.get("/healthz").status_code == 200

        private_redis.start()  # the same port and append-only file; the gateway is not restarted
        record = wait_until(lambda: ok_json(client.get(f"/v1/jobs/{job_id}")), 30, "the gateway to recover")
        assert record["status"] == "queued"  # the job submitted before the crash survived it
        assert client.post("/v1/jobs", json=spec).status_code == 202
        assert client.get("/readyz").status_code == 200


def ok_json(response: httpx.Response) -> dict | None:
    return response.json() if response.status_code == 200 else None


def test_a_worker_rides_out_a_redis_restart_and_its_job_finishes(
    settings: Settings, data_service: DataService, private_redis: RestartableRedis, workers: Workers
):
    reference_queue = JobQueue.from_url(settings.redis_url, prefix=settings.key_prefix)
    reference = reference_weights(settings, reference_queue, long_spec(data_service.address))

    queue = JobQueue.from_url(private_redis.url, prefix=settings.key_prefix)
    workers.env = worker_env(settings.model_copy(update={"redis_url": private_redis.url}), lease_ms=3000)
    worker = workers.start("w1")
    job = queue.submit(long_spec(data_service.address))
    wait_until(lambda: queue.get(job.id).progress.step >= 60, 60, "step 60")

    private_redis.stop(kill=True)
    wait_until(lambda: "redis unavailable" in worker.log(), 30, "the worker to find Redis gone")
    private_redis.start()

    record = wait_finished(queue, job.id, 90)
    assert record.status == JobStatus.succeeded, record.error + workers.logs()
    assert worker.alive(), "the worker must survive the outage, not be restarted"
    assert record.attempts == 1  # the attempt in flight went on
    assert logged_train_steps(queue, job.id) == list(range(5, 301, 5))
    assert_same_weights(final_weights(settings, job.id), reference)
