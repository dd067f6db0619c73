"""deploy/docker-compose.yml, checked by Docker Compose v2 itself and then by what it resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simtrain.settings import Settings

from .deployfiles import COMPOSE_CPU_FILE, COMPOSE_FILE, DOCKERFILE, ROOT, run

SIMTRAIN_SERVICES = ["data-service", "trainer", "generate-server", "gateway"]


@pytest.mark.parametrize(
    "files", [[COMPOSE_FILE], [COMPOSE_FILE, COMPOSE_CPU_FILE]], ids=["gpu", "cpu-override"]
)
def test_compose_config_is_valid(compose_bin: Path, files: list[Path]) -> None:
    args = [a for f in files for a in ("-f", f)]
    result = run([compose_bin, *args, "config", "--quiet"], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no warnings either (unset variables, obsolete keys)


def test_compose_binary_rejects_an_invalid_file(compose_bin: Path, tmp_path: Path) -> None:
    """The binary, unlike its Python wrapper, fails on a bad file: the test above means something."""
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  web:\n    image: nginx\n    restart_policy: sometimes\n")
    result = run([compose_bin, "-f", bad, "config", "--quiet"])
    assert result.returncode != 0
    assert "restart_policy" in result.stderr


def test_services(gpu_compose: dict[str, Any]) -> None:
    assert set(gpu_compose["services"]) == {"redis", "data-service", "trainer", "generate-server", "gateway"}


def test_redis_is_append_only_on_a_volume(gpu_compose: dict[str, Any]) -> None:
    redis = gpu_compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v["type"] == "volume" and v["target"] == "/data" for v in redis["volumes"])


def _volume_at(service: dict[str, Any], target: str) -> str:
    for volume in service.get("volumes", []):
        if volume["target"] == target:
            assert volume["type"] == "volume", f"{target} is a named volume"
            return volume["source"]
    raise AssertionError(f"nothing mounted at {target}")


def _settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the service's container would read: its environment, parsed by Settings."""
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize("name", SIMTRAIN_SERVICES)
def test_state_and_data_volumes(gpu_compose: dict[str, Any], name: str, monkeypatch) -> None:
    """They all share one state volume (checkpoints, reports, prepared data) at SIMTRAIN_STATE_DIR."""
    service = gpu_compose["services"][name]
    settings = _settings(service, monkeypatch)
    assert _volume_at(service, str(settings.state_dir)) == "state"
    if name == "data-service":
        assert _volume_at(service, str(settings.data_root)) == "data"


def test_data_service_is_reachable_where_jobs_look(gpu_compose: dict[str, Any], monkeypatch) -> None:
    services = gpu_compose["services"]
    data_service = _settings(services["data-service"], monkeypatch)
    assert data_service.data_service_host == "0.0.0.0"
    for name in SIMTRAIN_SERVICES:
        assert services[name]["environment"]["SIMTRAIN_DATA_SERVICE_ADDR"] == (
            f"data-service:{data_service.data_service_port}"
        )
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://redis:6379/")


def test_gateway_on_port_8000(gpu_compose: dict[str, Any], monkeypatch) -> None:
    gateway = gpu_compose["services"]["gateway"]
    settings = _settings(gateway, monkeypatch)
    assert settings.gateway_host == "0.0.0.0"
    assert [(p["published"], p["target"]) for p in gateway["ports"]] == [("8000", settings.gateway_port)]


def test_trainer_reserves_the_gpu_and_scales(gpu_compose: dict[str, Any]) -> None:
    trainer = gpu_compose["services"]["trainer"]
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    # `--scale trainer=N` needs containers without a fixed name or host port.
    assert "container_name" not in trainer
    assert "ports" not in trainer
    assert trainer["environment"]["SIMTRAIN_DEVICE"] == "cuda"


def test_cpu_override_reserves_no_gpu(cpu_compose: dict[str, Any]) -> None:
    trainer = cpu_compose["services"]["trainer"]
    assert "devices" not in str(trainer.get("deploy", {}))
    assert trainer["environment"]["SIMTRAIN_DEVICE"] == "cpu"
    assert trainer["build"]["args"]["TORCH_INDEX_URL"].endswith("/cpu")
    assert trainer["image"] != "simtrain/trainer:0.1.0"  # a CPU image never takes the GPU image's tag


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_builds_use_the_dockerfile(request, dockerfile, variant: str) -> None:
    """Each build names deploy/Dockerfile, one of its stages, and only ARGs that stage chain declares."""
    model = request.getfixturevalue(f"{variant}_compose")
    for name in SIMTRAIN_SERVICES:
        build = model["services"][name]["build"]
        assert (Path(build["context"]) / build["dockerfile"]).resolve() == DOCKERFILE
        target = build["target"]
        assert target == name
        declared = set(dockerfile.global_args)
        for stage in dockerfile.stages.values():
            declared |= set(dockerfile.args(stage.name))
        assert set(build.get("args", {})) <= declared


def test_every_healthcheck_is_declared(gpu_compose: dict[str, Any], dockerfile) -> None:
    """redis has one in the compose file; ours come from their images."""
    assert gpu_compose["services"]["redis"]["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    for name in SIMTRAIN_SERVICES:
        assert dockerfile.effective(name, "HEALTHCHECK"), name
