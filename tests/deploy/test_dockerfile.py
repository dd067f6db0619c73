"""deploy/Dockerfile: hadolint, then the structure the services rely on."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

from .deployfiles import DOCKERFILE, ROOT, SERVICE_TARGETS, Dockerfile, run


def test_hadolint_finds_nothing(hadolint_bin: Path) -> None:
    # Fail on every severity, style included.
    result = run([hadolint_bin, "--no-color", "--failure-threshold", "style", DOCKERFILE], cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_really_lints(hadolint_bin: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && apt-get install curl\n")
    result = run([hadolint_bin, "--no-color", bad])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag


def test_multi_stage_from_one_base_argument(dockerfile: Dockerfile) -> None:
    assert "BASE_IMAGE" in dockerfile.global_args
    external = {s.base for s in dockerfile.stages.values() if s.base not in dockerfile.stages}
    assert external == {"${BASE_IMAGE}"}
    assert len(dockerfile.stages) > len(SERVICE_TARGETS)


def _venv_source(dockerfile: Dockerfile, target: str) -> str:
    """The stage whose virtual environment the target copies."""
    for stage in dockerfile.chain(target):
        for copy in stage.all("COPY"):
            match = re.match(r"--from=(\S+) /opt/simtrain /opt/simtrain$", copy)
            if match:
                return match.group(1)
    raise AssertionError(f"{target} copies no /opt/simtrain")


def test_trainer_gets_cuda_torch_and_the_services_cpu_torch(dockerfile: Dockerfile) -> None:
    trainer_build = _venv_source(dockerfile, "trainer")
    index = dockerfile.args(trainer_build)["TORCH_INDEX_URL"]
    assert "/cpu" not in index  # PyPI's Linux torch wheel is the CUDA build
    assert "TORCH_VERSION" in dockerfile.args(trainer_build)
    for target in ("gateway", "data-service", "generate-server"):
        build = _venv_source(dockerfile, target)
        assert dockerfile.args(build)["CPU_TORCH_INDEX_URL"].endswith("/cpu")
    for build in {trainer_build, _venv_source(dockerfile, "gateway")}:
        runs = " ".join(dockerfile.stages[build].all("RUN"))
        assert '--index-url "${' in runs and '"torch==${TORCH_VERSION}"' in runs


@pytest.mark.parametrize("target", SERVICE_TARGETS)
def test_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile, target: str) -> None:
    # Numeric, so Kubernetes' runAsNonRoot can verify it.
    user = dockerfile.effective(target, "USER")
    assert user and re.fullmatch(r"\d+(:\d+)?", user), user
    assert int(user.split(":")[0]) != 0


EXPECTED = {
    "gateway": "gateway",
    "data-service": "data_service",
    "trainer": "trainer_service",
    "generate-server": "trainer_service.generate_server",
}


@pytest.mark.parametrize("target", SERVICE_TARGETS)
def test_command_and_healthcheck(dockerfile: Dockerfile, target: str) -> None:
    assert dockerfile.effective(target, "CMD") == f'["python", "-m", "{EXPECTED[target]}"]'
    healthcheck = dockerfile.effective(target, "HEALTHCHECK")
    assert healthcheck and healthcheck.endswith(f'CMD ["python", "/opt/simtrain/healthcheck.py", "{target}"]')


def test_images_get_every_package_file() -> None:
    """The images install the project as a wheel (not editable): a file that is not Python source
    reaches them only through pyproject's package-data. (make image-smoke found the gateway's
    static/ missing this way.)"""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"].get("package-data", {})
    missing = []
    for package in ("simtrain", "data_service", "trainer_service", "gateway"):
        patterns = package_data.get(package, []) + package_data.get("*", [])
        for path in (ROOT / package).rglob("*"):
            if not path.is_file() or path.suffix in {".py", ".pyc", ".pyi"} or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(ROOT / package).as_posix()
            if not any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
                missing.append(f"{package}/{relative}")
    assert not missing, f"not in [tool.setuptools.package-data], so not in the images: {missing}"


def test_dockerignore_sends_what_the_build_needs() -> None:
    """The allowlist in .dockerignore covers every package pyproject.toml installs."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        packages = [p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()]
        for package in fnmatch.filter(packages, pattern):
            assert package in allowed, f"{package} is left out of the image build context"
    assert {"pyproject.toml", "constraints.txt", pyproject["project"]["readme"]} <= allowed
    assert "deploy/healthcheck.py" in allowed
