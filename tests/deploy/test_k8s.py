"""deploy/k8s: rendered by kustomize, validated against the Kubernetes schemas, then checked for sense.

Built-in kinds are validated by kubernetes-validate (the Kubernetes JSON schemas it ships, strict:
unknown fields are errors) for the oldest and newest Kubernetes versions we claim. The two CRDs are
validated against schemas written here for the fields we use (tests/deploy/schemas), and the
PyTorchJob's pod templates against the Kubernetes PodTemplate schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from simtrain import queue

from .deployfiles import K8S, KUSTOMIZATIONS

KUBERNETES_VERSIONS = ["1.29.0", "1.37.0"]
SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("kubeflow.org/v1", "PyTorchJob"): "kubeflow-pytorchjob.json",
}
SIMTRAIN_UID = 10001


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec(doc)["containers"]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def env_of(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """A container's environment: its ConfigMaps (envFrom), then its own env entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", "<from valueFrom>")
    return env


# ---- kustomize and the schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_lists_every_manifest(name: str) -> None:
    """Every file the kustomization names exists, and no manifest beside it is forgotten."""
    folder = K8S / name
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = kustomization.get("resources", []) + [
        p["path"] for p in kustomization.get("patches", []) if "path" in p
    ]
    for entry in listed:
        assert (folder / entry).exists(), f"{name}: {entry} does not exist"
    files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert files <= set(listed), f"{name}: not in the kustomization: {files - set(listed)}"


def test_every_rendered_kind_has_a_schema(rendered) -> None:
    for name, docs in rendered.items():
        assert docs, name
        for doc in docs:
            key = (doc["apiVersion"], doc["kind"])
            if key in CRD_SCHEMAS:
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                pytest.fail(f"{name}: no schema validates {key}")
            except kubernetes_validate.ValidationError:
                pass  # reported by the next test


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_manifests_match_the_kubernetes_schemas(rendered, name: str, version: str) -> None:
    errors = []
    for doc in rendered[name]:
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.message}")
    assert not errors, "\n".join(errors)


def test_the_validator_is_strict() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "x", "livenessProbe": {"periodSekonds": 1}}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSekonds"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_custom_resources_match_their_schemas(rendered, name: str) -> None:
    for doc in rendered[name]:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            schema = json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text())
            jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def test_keda_schema_refuses_numbers_in_trigger_metadata(rendered) -> None:
    scaled = find(rendered["base"], "ScaledObject", "trainer")
    bad = json.loads(json.dumps(scaled))
    bad["spec"]["triggers"][0]["metadata"]["lagCount"] = 1
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]).read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)


def test_pytorchjob_pod_templates_match_the_kubernetes_schema(rendered) -> None:
    job = find(rendered["multinode"], "PyTorchJob", "simtrain-multinode")
    for role, spec in job["spec"]["pytorchReplicaSpecs"].items():
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"pytorchjob-{role.lower()}"},
            "template": spec["template"],
        }
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(pod_template, version, strict=True)


# ---- what the manifests mean -----------------------------------------------------------------------


def test_base_has_deployments_and_services(rendered) -> None:
    docs = rendered["base"]
    for name in ("gateway", "data-service", "redis"):
        deployment = find(docs, "Deployment", name)
        service = find(docs, "Service", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["name"] for c in containers(deployment) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    find(docs, "Deployment", "trainer")
    find(docs, "Deployment", "generate-server")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"simtrain"}


def test_trainer_requests_a_gpu(rendered) -> None:
    trainer = find(rendered["base"], "Deployment", "trainer")
    (container,) = containers(trainer)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env_of(container, rendered["base"])["SIMTRAIN_DEVICE"] == "cuda"


def test_simtrain_pods_run_as_the_image_user(rendered) -> None:
    for name, docs in rendered.items():
        for doc in docs:
            if doc["kind"] not in ("Deployment", "PyTorchJob") or doc["metadata"]["name"] == "redis":
                continue
            specs = (
                [r["template"]["spec"] for r in doc["spec"]["pytorchReplicaSpecs"].values()]
                if doc["kind"] == "PyTorchJob"
                else [pod_spec(doc)]
            )
            for spec in specs:
                context = spec["securityContext"]
                assert context["runAsNonRoot"] is True
                assert context["runAsUser"] == context["fsGroup"] == SIMTRAIN_UID, name


def test_probes_use_the_service_ports(rendered) -> None:
    docs = rendered["base"]
    (gateway,) = containers(find(docs, "Deployment", "gateway"))
    gateway_env = env_of(gateway, docs)
    assert gateway_env["SIMTRAIN_GATEWAY_HOST"] == "0.0.0.0"
    http = next(p for p in gateway["ports"] if p["name"] == "http")
    assert http["containerPort"] == int(gateway_env["SIMTRAIN_GATEWAY_PORT"])
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"

    (data,) = containers(find(docs, "Deployment", "data-service"))
    data_env = env_of(data, docs)
    assert data_env["SIMTRAIN_DATA_SERVICE_HOST"] == "0.0.0.0"
    port = int(data_env["SIMTRAIN_DATA_SERVICE_PORT"])
    assert data["readinessProbe"]["grpc"]["port"] == data["livenessProbe"]["grpc"]["port"] == port

    (generate,) = containers(find(docs, "Deployment", "generate-server"))
    probe = generate["livenessProbe"]["exec"]["command"]
    assert probe == ["python", "/opt/simtrain/healthcheck.py", "generate-server"]


def test_gateway_serves_the_probed_paths() -> None:
    from gateway.health import router

    assert {"/healthz", "/readyz"} <= {route.path for route in router.routes}


def test_services_find_each_other(rendered) -> None:
    docs = rendered["base"]
    settings = find(docs, "ConfigMap", "simtrain-settings")["data"]
    host, port = settings["SIMTRAIN_DATA_SERVICE_ADDR"].split(":")
    assert int(port) in {p["port"] for p in find(docs, "Service", host)["spec"]["ports"]}
    url = urlparse(settings["REDIS_URL"])
    assert url.port in {p["port"] for p in find(docs, "Service", url.hostname)["spec"]["ports"]}


@pytest.mark.parametrize("name", ["base", "multinode"])
def test_state_volume_is_shared(rendered, name: str) -> None:
    """Data service, trainers and gateway share checkpoints and reports through SIMTRAIN_STATE_DIR."""
    docs = rendered[name]
    base = rendered["base"]
    state = find(base, "PersistentVolumeClaim", "simtrain-state")
    assert state["spec"]["accessModes"] == ["ReadWriteMany"]
    templates = [
        spec["template"]["spec"]
        for d in docs
        if d["kind"] == "PyTorchJob"
        for spec in d["spec"]["pytorchReplicaSpecs"].values()
    ] + [pod_spec(d) for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "redis"]
    assert templates
    for spec in templates:
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        }
        for container in spec["containers"]:
            state_dir = env_of(container, base)["SIMTRAIN_STATE_DIR"]
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == state_dir)
            assert claims[mount["name"]] == "simtrain-state"


def test_external_redis_overlay_drops_the_bundled_redis(rendered) -> None:
    docs = rendered["overlays/external-redis"]
    assert not [d for d in docs if d["metadata"]["name"] in ("redis", "redis-data")]
    settings = find(docs, "ConfigMap", "simtrain-settings")["data"]
    url = urlparse(settings["REDIS_URL"])
    assert url.hostname != "redis"
    assert settings["REDIS_ADDRESS"] == f"{url.hostname}:{url.port}"


@pytest.mark.parametrize("name", ["base", "overlays/external-redis"])
def test_keda_scales_trainers_on_the_jobs_stream(rendered, name: str) -> None:
    docs = rendered[name]
    scaled = find(docs, "ScaledObject", "trainer")
    target = scaled["spec"]["scaleTargetRef"]
    deployment = find(docs, target.get("kind", "Deployment"), target["name"])
    (container,) = containers(deployment)
    env = env_of(container, docs)
    stream = queue.JobQueue(client=None, prefix=env["SIMTRAIN_KEY_PREFIX"]).stream
    names = set()
    for trigger in scaled["spec"]["triggers"]:
        meta = trigger["metadata"]
        assert trigger["type"] == "redis-streams"
        assert meta["stream"] == stream
        assert meta["consumerGroup"] == queue.GROUP
        # KEDA reads the address from the trainer's environment; it is the Redis of REDIS_URL.
        url = urlparse(env["REDIS_URL"])
        address_host, address_port = env[meta["addressFromEnv"]].split(":")
        assert int(address_port) == (url.port or 6379)
        assert address_host == url.hostname or address_host.startswith(
            f"{url.hostname}.{deployment['metadata']['namespace']}.svc"
        )
        assert meta.get("databaseIndex", "0") == (url.path.strip("/") or "0")
        names.add(trigger["name"])
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert set(re.findall(r"[A-Za-z_]\w*", modifiers["formula"])) == names
    assert scaled["spec"]["minReplicaCount"] == 0  # no idle GPUs


def test_pytorchjob_torchrun_matches_its_resources(rendered) -> None:
    job = find(rendered["multinode"], "PyTorchJob", "simtrain-multinode")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert sum(r["replicas"] for r in replicas.values()) >= 2
    for spec in replicas.values():
        (container,) = spec["template"]["spec"]["containers"]
        env = env_of(container, rendered["base"])
        assert int(env["NNODES"]) == sum(r["replicas"] for r in replicas.values())
        assert int(env["NPROC_PER_NODE"]) == container["resources"]["limits"]["nvidia.com/gpu"]
        script = " ".join(container["command"] + container["args"])
        assert "torchrun --nnodes=$NNODES --nproc-per-node=$NPROC_PER_NODE " in script
        assert script.endswith("-m trainer_service.distributed --job-id $JOB_ID")
        assert {"JOB_ID", "NNODES", "NPROC_PER_NODE"} <= env.keys()
