"""Experiments through real services: the gateway queues every variant × seed as a job, a real worker trains
them on the demo corpus, and the comparison, the curves PNG, the web page and the CLI read the result.

Real Redis, a real data service, the gateway under uvicorn in a thread, a trainer worker in a thread.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from simtrain.cli import app
from simtrain.queue import JobQueue
from tests.integration.gateway_support import error_of, wait_finished
from tests.integration.trainer_support import DataService
from trainer_service.worker import Worker

pytestmark = pytest.mark.timeout(300)


def experiment(address: str) -> dict[str, Any]:
    """Three variants, two seeds: char and byte tokenizers, and one with no val split (it cannot train)."""
    return {
        "name": "tokenizers",
        "base": {
            "dataset": {"module": "text", "source": "tiny.txt"},
            "data_service": address,
            "model": {
                "n_layer": 1,
                "n_head": 2,
                "n_embd": 16,
                "embd_pdrop": 0,
                "resid_pdrop": 0,
                "attn_pdrop": 0,
            },
            "training": {
                "max_iters": 16,
                "batch_size": 4,
                "block_size": 16,
                "learning_rate": 3e-3,
                "eval_interval": 8,
                "eval_iters": 2,
                "device": "cpu",
            },
            "checks": {"overfit_steps": 10},
        },
        "variants": {
            "char": {},
            "byte": {"dataset": {"tokenizer": "byte"}},
            "noval": {"dataset": {"options": {"val_fraction": 0}}},
        },
        "seeds": 2,
        "tags": ["ablation"],
    }


def test_three_variants_two_seeds_run_and_compare(
    gateway: httpx.Client, worker: Worker, data_service: DataService, job_queue: JobQueue
) -> None:
    accepted = gateway.post("/v1/experiments", json=experiment(data_service.address))
    assert accepted.status_code == 202, accepted.text
    experiment_id = accepted.json()["id"]
    jobs = accepted.json()["jobs"]
    assert [(j["variant"], j["seed"]) for j in jobs] == [
        (v, s) for v in ("char", "byte", "noval") for s in (0, 1)
    ]
    for j in jobs:  # ordinary jobs on the queue, each with its seed, a name and tags saying whose it is
        spec = job_queue.get(j["job_id"]).spec
        assert spec.training.seed == j["seed"]
        assert spec.name == f"tokenizers / {j['variant']} / seed {j['seed']}"
        assert spec.tags == ["ablation", "experiment:tokenizers", f"variant:{j['variant']}"]
    by_tag = gateway.get("/v1/jobs", params={"tag": ["experiment:tokenizers", "variant:byte"]}).json()
    assert sorted(j["id"] for j in by_tag["jobs"]) == sorted(
        j["job_id"] for j in jobs if j["variant"] == "byte"
    )
    assert [e["id"] for e in gateway.get("/v1/experiments?tag=ablation").json()["experiments"]] == [
        experiment_id
    ]
    assert gateway.get("/v1/experiments?tag=other").json()["experiments"] == []
    assert len(gateway.get("/v1/experiments?name=TOKEN").json()["experiments"]) == 1
    error_of(gateway.get("/v1/experiments?tag=a%20b"), 422)

    record = wait_finished(gateway, experiment_id, 240)
    statuses = {(r["variant"], r["status"]) for r in record["runs"]}
    assert {("char", "succeeded"), ("byte", "succeeded")} <= statuses, record["runs"]
    comparison = record["comparison"]
    assert comparison == gateway.get(f"/v1/experiments/{experiment_id}/comparison").json()
    assert comparison["complete"] and comparison["common_step"] == 16
    # char and byte tokenize differently: compared in bits per byte (tiny.txt is ASCII: one byte a token).
    assert comparison["unit"] == "bits per byte"
    variants = {v["name"]: v for v in comparison["variants"]}
    assert variants["char"]["n"] == 2 and variants["byte"]["n"] == 2
    assert variants["char"]["data"]["val bytes per token"] == pytest.approx(1.0)
    assert variants["char"]["std"] is not None and variants["char"]["std"] > 0
    ranked = [r for r in comparison["ranking"] if r["place"] is not None]
    assert {r["variant"] for r in ranked} == {"char", "byte"}
    # The gap is judged against the seeds' spread, and the sentence says the same as the flag.
    behind = ranked[1]["behind_best"]
    assert behind["delta"] >= 0 and behind["stderr"] > 0
    assert behind["significant"] is (behind["delta"] > 2 * behind["stderr"])
    said = "beats" if behind["significant"] else "within noise"
    assert said in behind["text"] and f"{behind['delta']:.3f}" in behind["text"]
    # The variant that cannot train stays, with its verdict and why.
    noval = variants["noval"]
    assert noval["n"] == 0 and noval["verdict"] == "not fit"
    last = comparison["ranking"][-1]
    assert last["variant"] == "noval" and last["place"] is None and last["why"]
    assert "dataset.options.val_fraction" in comparison["differences"]
    assert "dataset.tokenizer" in comparison["differences"]
    assert any(row["variants"].get("noval", {}).get("worst") == "fail" for row in comparison["checks"])

    png = gateway.get(f"/v1/experiments/{experiment_id}/curves.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    page = gateway.get(f"/experiments/{experiment_id}")
    assert page.status_code == 200 and "experiment.js" in page.text

    listed = gateway.get("/v1/experiments").json()["experiments"]
    assert [e["id"] for e in listed] == [experiment_id]

    url = str(gateway.base_url)
    runner = CliRunner()
    shown = runner.invoke(
        app, ["experiment", "show", experiment_id[:8], "--gateway", url], env={"COLUMNS": "250"}
    )
    assert shown.exit_code == 0, shown.output
    assert comparison["summary"] in shown.output and "noval" in shown.output and "no loss" in shown.output
    char_jobs = [r["job_id"][:8] for r in record["runs"] if r["variant"] == "char"]
    byte_job = next(r["job_id"][:8] for r in record["runs"] if r["variant"] == "byte")
    compared = runner.invoke(app, ["compare", *char_jobs, byte_job, "--gateway", url, "--json"])
    assert compared.exit_code == 0, compared.output
    assert "bits per byte" in compared.output and '"n": 2' in compared.output  # the char seeds grouped

    assert gateway.delete(f"/v1/experiments/{experiment_id}").status_code == 204
    assert all(job_queue.get(j["job_id"]) is None for j in jobs)
    error_of(gateway.get(f"/v1/experiments/{experiment_id}"), 404)


def test_cancel_stops_every_run_and_delete_waits_for_it(
    gateway: httpx.Client, data_service: DataService
) -> None:
    spec = experiment(data_service.address)
    accepted = gateway.post("/v1/experiments", json=spec).json()  # no worker: every run stays queued
    conflict = error_of(gateway.delete(f"/v1/experiments/{accepted['id']}"), 409)
    assert len(conflict["details"]) == 6
    cancelled = gateway.post(f"/v1/experiments/{accepted['id']}/cancel").json()
    assert cancelled["cancel_requested"] and {r["status"] for r in cancelled["runs"]} == {"cancelled"}
    record = gateway.get(f"/v1/experiments/{accepted['id']}").json()
    assert record["status"] == "finished"
    assert {r["place"] for r in record["comparison"]["ranking"]} == {None}
    assert gateway.delete(f"/v1/experiments/{accepted['id']}").status_code == 204


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"variants": {"a": {"training": {"max_iters": 0}}}}, "variants.a.training.max_iters"),
        ({"variants": {"a": {"training": {"max_iter": 5}}}}, "variants.a.training.max_iter"),
        ({"variants": {"a": {"model": {"model_type": "gpt-huge"}}}}, "variants.a.model"),
        ({"variants": {"a": {"dataset": {"source": "missing.txt"}}}}, "variants.a.dataset.source"),
        ({"variants": {"a": {"dataset": {"tokenizer": "nope"}}}}, "variants.a.dataset.tokenizer"),
        ({"variants": {"a": {"training": {"batch_size": 4096, "block_size": 8192}}}}, "variants.a.training"),
        ({"variants": {"a": {"training": {"seed": 1}}}}, "variants.a.training.seed"),
        ({"variants": {}}, "variants"),
        ({"seeds": 0}, "seeds"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_experiments_are_422_naming_the_variant_and_field(
    gateway: httpx.Client, data_service: DataService, job_queue: JobQueue, change: dict, field: str
) -> None:
    body = experiment(data_service.address)
    body["base"].pop("data_service")  # the gateway's own data service, so it checks the dataset
    body |= change
    error = error_of(gateway.post("/v1/experiments", json=body), 422)
    fields = [d.get("field") or ".".join(map(str, d.get("loc", []))) for d in error["details"]]
    assert any(f.startswith(field) or field in f for f in fields), error
    assert job_queue.r.xlen(job_queue.stream) == 0  # nothing queued


def test_compare_refuses_bad_job_ids(gateway: httpx.Client) -> None:
    error_of(gateway.post("/v1/compare", json={"jobs": ["abc"]}), 422)
    error_of(gateway.post("/v1/compare", json={"jobs": ["not-hex", "abc"]}), 422)
    error_of(gateway.post("/v1/compare", json={"jobs": ["abc", "def"]}), 404)
    error_of(gateway.get("/v1/experiments/zzz"), 404)
    error_of(gateway.get("/v1/experiments/abc"), 404)


def test_the_cli_runs_lists_cancels_and_deletes(
    gateway: httpx.Client, data_service: DataService, tmp_path
) -> None:
    spec_file = tmp_path / "experiment.yaml"
    spec_file.write_text(yaml.safe_dump(experiment(data_service.address)))
    url = str(gateway.base_url)
    runner = CliRunner()
    ran = runner.invoke(app, ["experiment", "run", str(spec_file), "--gateway", url])
    assert ran.exit_code == 0, ran.output
    short_id = ran.output.split(":")[0].strip()
    assert "6 jobs queued" in ran.output and len(short_id) == 8
    listed = runner.invoke(app, ["experiment", "list", "--gateway", url], env={"COLUMNS": "200"})
    assert short_id in listed.output and "tokenizers" in listed.output and "0/6" in listed.output
    refused = runner.invoke(app, ["experiment", "delete", short_id, "--gateway", url])
    assert refused.exit_code == 1 and "cancel first" in refused.output
    cancelled = runner.invoke(app, ["experiment", "cancel", short_id, "--gateway", url])
    assert cancelled.exit_code == 0 and cancelled.output.count("cancelled") == 6
    assert runner.invoke(app, ["experiment", "delete", short_id, "--gateway", url]).exit_code == 0
    missing = runner.invoke(app, ["experiment", "show", short_id, "--gateway", url])
    assert missing.exit_code == 2 and "no experiment id starts with" in missing.output

    bad = experiment(data_service.address)
    bad["variants"]["byte"]["training"] = {"max_iters": 0}
    spec_file.write_text(yaml.safe_dump(bad))
    refused = runner.invoke(app, ["experiment", "run", str(spec_file), "--gateway", url])
    assert refused.exit_code == 1 and "variants.byte.training.max_iters" in refused.output
