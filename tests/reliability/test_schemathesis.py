"""schemathesis against the gateway's own OpenAPI document: at least 1,000 generated requests, no 5xx, and
every response conforms to the document (status code, content type, body schema).

The gateway runs for real (uvicorn on a free port) with a real Redis and a real data service. Requests
come from every operation's schema, both valid ones (``positive``) and ones that break it (``negative``).
Derandomised, so CI replays the same cases; ``SIMTRAIN_SCHEMATHESIS_EXAMPLES`` asks for more per operation.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from data_service.server import serve as serve_data
from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.settings import Settings
from tests.integration.gateway_support import serve

pytestmark = pytest.mark.timeout(600)
PER_OPERATION = int(os.environ.get("SIMTRAIN_SCHEMATHESIS_EXAMPLES", "50"))
MINIMUM_CASES = 1000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def gateway_url(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[str]:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny.txt").write_text("the cat sat on the mat.\n\nthe dog sat on the log.\n" * 20)
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_root=tmp_path / "data", state_dir=tmp_path / "var"
    )
    data_server, port = serve_data(settings, port=0, upload_limit_bytes=1 << 20)
    settings = settings.model_copy(update={"data_service_addr": f"127.0.0.1:{port}"})
    gateway = GatewaySettings(max_upload_bytes=1 << 20, data_service_timeout_s=30)
    try:
        with serve(create_app(settings, gateway)) as client:
            yield str(client.base_url).rstrip("/")
    finally:
        data_server.stop(None)


def test_generated_requests_get_no_5xx_and_conforming_answers(gateway_url: str):
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    session = requests.Session()
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                response = case.call_and_validate(session=session, checks=CHECKS, timeout=30)
                cases[label] += 1  # noqa: B023 (called before the loop moves on)
                statuses[response.status_code] += 1

            try:
                check()
            except Unsatisfiable:  # nothing to break: an operation without parameters or body
                assert mode == schemathesis.GenerationMode.NEGATIVE, label
    total = sum(cases.values())
    print(f"{total} cases over {len(cases)} operations; statuses {dict(sorted(statuses.items()))}")
    assert total >= MINIMUM_CASES, cases
    assert not [s for s in statuses if s >= 500]
