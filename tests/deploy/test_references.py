"""Everything the deploy files name exists in the project: modules, commands, environment variables."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from .deployfiles import DEPLOY, ROOT, SERVICE_TARGETS, run

# Variables the deploy files set or use that simtrain's Settings does not read, and who reads them.
OTHER_ENV = {
    "REDIS_ADDRESS": "KEDA's redis-streams scaler (addressFromEnv)",
    "JOB_ID": "the torchrun command line in the PyTorchJob template",
    "NNODES": "the torchrun command line in the PyTorchJob template",
    "NPROC_PER_NODE": "the torchrun command line in the PyTorchJob template",
    "PYTHONUNBUFFERED": "CPython",
    "PYTHONDONTWRITEBYTECODE": "CPython",
    "PIP_NO_CACHE_DIR": "pip, at image build time",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip, at image build time",
    "PATH": "the shell",
}
# Set in the pods by the Kubeflow training operator.
OPERATOR_ENV = {"MASTER_ADDR", "MASTER_PORT"}
# The trainer engineer's torchrun entry point; checked for real once it is in the tree.
PENDING_MODULES = {"trainer_service.distributed"}


def _k8s_containers(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The containers that run simtrain images (not the bundled Redis)."""
    out = []
    for docs in rendered.values():
        for doc in docs:
            if doc["kind"] == "Deployment":
                out += doc["spec"]["template"]["spec"]["containers"]
            elif doc["kind"] == "PyTorchJob":
                for spec in doc["spec"]["pytorchReplicaSpecs"].values():
                    out += spec["template"]["spec"]["containers"]
    return [c for c in out if c["image"].startswith("simtrain/")]


def _env_names(gpu_compose, cpu_compose, dockerfile, rendered) -> dict[str, str]:
    """Each environment variable a deploy file sets, with where."""
    names: dict[str, str] = {}
    for label, model in (("compose", gpu_compose), ("compose cpu", cpu_compose)):
        for service_name, service in model["services"].items():
            if service_name != "redis":  # a third-party image
                names.update(dict.fromkeys(service.get("environment", {}), f"{label}: {service_name}"))
    for stage in dockerfile.stages.values():
        for env in stage.all("ENV"):
            names.update(dict.fromkeys(re.findall(r"(\w+)=", env), f"Dockerfile: {stage.name}"))
    for name, docs in rendered.items():
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                names.update(dict.fromkeys(doc["data"], f"k8s {name}: ConfigMap"))
        for container in _k8s_containers({name: docs}):
            names.update(dict.fromkeys((e["name"] for e in container.get("env", [])), f"k8s {name}"))
    return names


def test_every_environment_variable_is_read_by_someone(
    gpu_compose, cpu_compose, dockerfile, rendered, settings_env
) -> None:
    names = _env_names(gpu_compose, cpu_compose, dockerfile, rendered)
    unknown = {n: where for n, where in names.items() if n not in settings_env and n not in OTHER_ENV}
    assert not unknown, f"not simtrain settings: {unknown}"
    # The deploy files do configure the services through the settings.
    assert {"REDIS_URL", "SIMTRAIN_STATE_DIR", "SIMTRAIN_DATA_SERVICE_ADDR"} <= names.keys()


def _commands(dockerfile, rendered) -> list[list[str]]:
    """Every command line the deploy files run in a container."""
    commands = []
    for target in SERVICE_TARGETS:
        for keyword in ("CMD", "HEALTHCHECK"):
            value = dockerfile.effective(target, keyword)
            commands.append(exec_form(value))
    for container in _k8s_containers(rendered):
        line = container.get("command", []) + container.get("args", [])
        if line[:2] == ["/bin/sh", "-c"]:
            line = shlex.split(line[2].removeprefix("exec "))
        commands.append(line)
    return commands


def exec_form(instruction: str) -> list[str]:
    """The command of a CMD or HEALTHCHECK instruction in exec form (a JSON list)."""
    return json.loads(instruction.split("CMD ", 1)[-1])


def _modules(commands: list[list[str]]) -> set[str]:
    """X of every `python -m X` and `torchrun … -m X`."""
    return {line[line.index("-m") + 1] for line in commands if "-m" in line}


def test_commands_name_real_modules_and_scripts(dockerfile, rendered) -> None:
    commands = _commands(dockerfile, rendered)
    programs = {line[0] for line in commands}
    assert programs == {"python", "torchrun"}, programs
    assert importlib.metadata.entry_points(group="console_scripts", name="torchrun")
    assert importlib.metadata.entry_points(group="console_scripts", name="simtrain")  # image-smoke runs it
    scripts = {line[1] for line in commands if line[0] == "python" and line[1].startswith("/")}
    assert scripts == {"/opt/simtrain/healthcheck.py"}
    assert (DEPLOY / "healthcheck.py").exists()


@pytest.mark.parametrize(
    "module", ["gateway", "data_service", "trainer_service", "trainer_service.distributed"]
)
def test_module_runs_with_python_dash_m(module: str, dockerfile, rendered) -> None:
    assert module in _modules(_commands(dockerfile, rendered))
    spec = importlib.util.find_spec(module)
    if spec is None and module in PENDING_MODULES:
        pytest.skip(f"{module} is not in the tree yet (the trainer's torchrun entry point); assumed")
    assert spec is not None, module
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def test_torchrun_entry_point_takes_a_job_id() -> None:
    module = "trainer_service.distributed"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not in the tree yet; assumed to take --job-id")
    result = run([sys.executable, "-m", module, "--help"], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "--job-id" in result.stdout


def test_every_healthcheck_names_a_check(dockerfile) -> None:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", DEPLOY / "healthcheck.py")
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    for target in SERVICE_TARGETS:
        line = exec_form(dockerfile.effective(target, "HEALTHCHECK"))
        assert line[-1] in healthcheck.CHECKS


def test_torchrun_variables_are_defined(rendered) -> None:
    for container in _k8s_containers({"multinode": rendered["multinode"]}):
        script = container["args"][0]
        defined = {e["name"] for e in container["env"]} | OPERATOR_ENV
        assert set(re.findall(r"\$(\w+)", script)) <= defined


def test_make_targets_use_the_compose_files() -> None:
    for args in (["up"], ["up", "CPU=1"], ["down"]):
        result = run(["make", "-n", *args], cwd=ROOT)
        assert result.returncode == 0, result.stderr
        files = re.findall(r"-f (\S+)", result.stdout)
        assert "deploy/docker-compose.yml" in files, result.stdout
        assert ("deploy/docker-compose.cpu.yml" in files) == ("CPU=1" in args)
        assert all((ROOT / f).exists() for f in files)


def test_image_smoke_script_parses() -> None:
    script = DEPLOY / "image-smoke.sh"
    assert run(["bash", "-n", script]).returncode == 0
    text = script.read_text()
    assert "podman build --isolation=chroot" in text and "buildah run" in text
    assert "simtrain --help" in text
    assert Path(ROOT / "Makefile").read_text().count("deploy/image-smoke.sh") == 1
