"""The fit report end to end in one process: a real job writes it, the gateway serves it, the CLI judges it.

Real Redis, a real data service on the demo corpus, the gateway under uvicorn in a thread.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.app import create_app
from simtrain.cli import EXIT_NOT_FIT, app
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import error_of, serve
from tests.integration.trainer_support import DataService, job_spec
from trainer_service import job_runner
from trainer_service.job_runner import JobInterrupted, JobRun

LEGACY_KEYS = {"job_id", "dataset", "model", "loss_at_init", "final", "curve", "samples", "checkpoint"}


def spec(address: str, **training: Any):
    return job_spec(address, max_iters=30, eval_interval=15, batch_size=8, block_size=32, **training)


def run_job(settings: Settings, queue: JobQueue, address: str, **training: Any) -> tuple[str, dict[str, Any]]:
    job = queue.submit(spec(address, **training))
    report = JobRun(job, settings, queue, lambda: False).run()
    queue.set_report(job.id, report)  # what the worker does with a succeeded job's report
    return job.id, report


def test_a_job_writes_the_fit_report_and_its_plot(
    settings: Settings, data_service: DataService, job_queue: JobQueue
) -> None:
    job_id, report = run_job(settings, job_queue, data_service.address)
    assert LEGACY_KEYS <= set(report)
    assert report["verdict"] in ("fit", "fit with warnings", "not fit")
    names = [c["name"] for c in report["checks"]]
    for name in (
        "token_ids_in_range",
        "targets_aligned",
        "loss_at_init",
        "one_batch_overfit",
        "trace",
        "finite",
    ):
        assert name in names
    for check in report["checks"]:
        assert {"name", "section", "title", "verdict", "reason", "value", "threshold", "setting"} <= set(
            check
        )
    order = [{"fail": 0, "warn": 1, "pass": 2, "skip": 3}[c["verdict"]] for c in report["checks"]]
    assert order == sorted(order)  # failing checks first

    calls = {name: f["calls"] for name, f in report["trace"]["functions"].items()}
    for name in ("batch_fetch", "lr_schedule", "forward", "loss", "backward", "grad_clip", "optimizer_step"):
        assert calls[name] == 30, name
    assert calls["eval"] == 3 and calls["checkpoint"] == 2 and calls["generate"] >= 1 and calls["encode"] == 1
    assert report["preflight"]["steps"] == 50 and report["preflight"]["passed"]
    assert report["data"]["batches"]["batches"] >= 30 and report["data"]["batches"]["out_of_range"] == 0
    assert [s for s, _ in report["curve"]["train_eval"]] == [0, 15, 30]

    on_disk = json.loads((settings.jobs_dir / job_id / "report.json").read_text())
    assert on_disk == report
    png = settings.jobs_dir / job_id / "report.png"
    assert report["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_keeps_the_preflight_and_counts_the_whole_job(
    settings: Settings, data_service: DataService, job_queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    preflights: list[int] = []
    original = job_runner.overfit_one_batch
    monkeypatch.setattr(
        job_runner, "overfit_one_batch", lambda *a, **kw: preflights.append(1) or original(*a, **kw)
    )
    job = job_queue.submit(spec(data_service.address))
    first = JobRun(job, settings, job_queue, lambda: first.trainer.iter_num + 1 >= 20)
    with pytest.raises(JobInterrupted):
        first.run()
    report = JobRun(job, settings, job_queue, lambda: False).run()

    assert preflights == [1]  # recorded in the checkpoint, not run again
    assert report["preflight"] == first.monitor.preflight
    calls = {name: f["calls"] for name, f in report["trace"]["functions"].items()}
    assert calls["optimizer_step"] == 30 and calls["eval"] == 3
    assert next(c for c in report["checks"] if c["name"] == "trace")["verdict"] == "pass"


@pytest.fixture
def gateway(settings: Settings) -> Iterator[Any]:
    with serve(create_app(settings)) as client:
        yield client


def test_the_gateway_serves_the_report_page_and_plot(
    settings: Settings, data_service: DataService, job_queue: JobQueue, gateway: Any
) -> None:
    job_id, report = run_job(settings, job_queue, data_service.address)
    page = gateway.get(f"/v1/jobs/{job_id}/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Fit report" in html and report["verdict"] in html and "<svg" in html and "<polyline" in html
    for check in report["checks"]:
        assert check["title"] in html
    for section in ("checks", "data", "trace", "samples", "preflight", "hyperparameters"):
        assert f"id='{section}'" in html
    for check in report["checks"]:
        assert f"<tr id='check-{check['name']}'>" in html
    # The job's spec: spec() trains 2 layers, 2 heads, 32 wide for 30 steps of 8 rows of 32 tokens.
    for label, value in (
        ("model preset", "2 layers, 2 heads, 32 wide"),
        ("learning rate", "0.003"),
        ("batch size", "8"),
        ("block size", "32"),
        ("iterations", "30"),
        ("dataset", "text module"),
        ("source", "tiny.txt"),
        ("tokenizer", "char"),
        ("packing", "stream"),
        ("dataset options", "none"),
    ):
        assert f"<td>{label}</td><td>{value}</td>" in html, label
    png = gateway.get(f"/v1/jobs/{job_id}/report.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:4] == b"\x89PNG"
    # The page carries the same PNG itself, so its link works where no token can be sent (a blob page).
    assert (
        f"href='data:image/png;base64,{base64.b64encode(png.content).decode()}' download='{job_id}.png'"
        in html
    )


def test_the_report_page_escapes_and_waits_for_a_report(job_queue: JobQueue, gateway: Any) -> None:
    job_id = job_queue.submit(spec("127.0.0.1:1")).id
    assert error_of(gateway.get(f"/v1/jobs/{job_id}/report.html"), 404)["code"] == "report_not_ready"
    assert error_of(gateway.get(f"/v1/jobs/{job_id}/report.png"), 404)["code"] == "report_not_ready"
    assert error_of(gateway.get(f"/v1/jobs/{'f' * 32}/report.html"), 404)["code"] == "not_found"
    hostile = {"job_id": job_id, "verdict": "not fit", "summary": "<script>alert(1)</script>", "checks": []}
    job_queue.set_report(job_id, hostile)
    html = gateway.get(f"/v1/jobs/{job_id}/report.html").text
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_cli_report_prints_the_checks_and_exits_by_verdict(
    job_queue: JobQueue, gateway: Any, settings: Settings
) -> None:
    check = {"name": "targets_aligned", "verdict": "fail", "reason": "y is not x shifted", "value": 0.02}
    check |= {"threshold": "fail < 0.99", "section": "recipe", "title": "targets aligned"}
    base = {"loss_at_init": {"val": None, "expected_ln_vocab": 3.87}, "final": {"train_loss": None}}
    base["final"]["val_loss"] = None
    runner = CliRunner()
    url = str(gateway.base_url)
    for verdict, code in (("not fit", EXIT_NOT_FIT), ("fit with warnings", 0)):
        job_id = job_queue.submit(spec("127.0.0.1:1")).id
        job_queue.set_report(job_id, base | {"job_id": job_id, "verdict": verdict, "checks": [check]})
        shown = runner.invoke(app, ["report", job_id, "--gateway", url], env={"COLUMNS": "160"})
        assert shown.exit_code == code, shown.output
        for words in ("targets_aligned", "fail < 0.99", "y is not x shifted", f"verdict: {verdict}"):
            assert words in shown.output
        as_json = runner.invoke(app, ["report", job_id, "--gateway", url, "--json"])
        assert as_json.exit_code == code and json.loads(as_json.output)["verdict"] == verdict
