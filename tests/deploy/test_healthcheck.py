"""deploy/healthcheck.py, the images' HEALTHCHECK, against the real services on loopback."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import uvicorn

from simtrain.settings import Settings

from .deployfiles import DEPLOY


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, key_prefix: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_root=tmp_path / "data",
        state_dir=tmp_path / "state",
        data_service_host="127.0.0.1",
        gateway_host="127.0.0.1",
        gateway_port=free_port(),
    )


def test_data_service(healthcheck: ModuleType, settings: Settings) -> None:
    from data_service.server import serve

    server, port = serve(settings, port=0)
    probe = settings.model_copy(update={"data_service_port": port})
    try:
        assert healthcheck.check_data_service(probe) is None
    finally:
        server.stop(None).wait()
    assert "UNAVAILABLE" in healthcheck.check_data_service(probe)


@pytest.fixture
def gateway(settings: Settings) -> Iterator[Settings]:
    from gateway.app import create_app

    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.gateway_port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    yield settings
    server.should_exit = True
    thread.join(10)


def test_gateway(healthcheck: ModuleType, gateway: Settings) -> None:
    assert healthcheck.check_gateway(gateway) is None


def test_gateway_down(healthcheck: ModuleType, settings: Settings) -> None:
    assert "Connection refused" in healthcheck.check_gateway(settings)


def test_trainer_needs_redis(healthcheck: ModuleType, settings: Settings) -> None:
    assert healthcheck.check_trainer(settings) is None
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    assert healthcheck.check_trainer(down).startswith("redis:")


def test_main(healthcheck: ModuleType, settings: Settings, monkeypatch, capsys) -> None:
    assert healthcheck.main([]) == 2
    assert healthcheck.main(["nope"]) == 2
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    assert healthcheck.main(["trainer"]) == 0
    monkeypatch.setenv("SIMTRAIN_GATEWAY_PORT", str(free_port()))
    assert healthcheck.main(["gateway"]) == 1
    assert "unhealthy" in capsys.readouterr().err


def test_generate_server_lives_while_its_heartbeat_does(healthcheck: ModuleType, settings: Settings) -> None:
    from trainer_service.generate_server import GenerateServer

    named = settings.model_copy(update={"worker_name": f"{socket.gethostname()}-test"})
    assert "no heartbeat of generate server" in healthcheck.check_generate_server(named)
    server = GenerateServer(named)
    thread = threading.Thread(target=server.run_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while healthcheck.check_generate_server(named) is not None:
            assert time.monotonic() < deadline, healthcheck.check_generate_server(named)
            time.sleep(0.05)
    finally:
        server.stop()
        thread.join(timeout=10)
    assert "no heartbeat" in healthcheck.check_generate_server(named)  # a stopped server takes it away
    down = named.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    assert healthcheck.check_generate_server(down).startswith("redis:")
