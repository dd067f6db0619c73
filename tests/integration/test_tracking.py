"""MLflow tracking through the real services: a job submitted to the gateway, trained by a real worker on a
real data service, is read back from a real MLflow file store with MlflowClient (no mock of MLflow).

Proven both ways: a job tracked cleanly has no tracking warning in its log, and a store that cannot be
written (or is refused) costs a warning in the log and nothing else; the job still succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

from gateway.app import create_app
from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import serve
from tests.integration.trainer_support import job_spec
from trainer_service.job_runner import JobInterrupted, JobRun
from trainer_service.tracking import JOB_ID_TAG
from trainer_service.worker import Worker

WARNING = "experiment tracking stops for this job"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real MLflow file store in the test's folder; MLflow refuses file stores without the opt-in."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()


@pytest.fixture
def tracked(settings: Settings, store: str) -> Settings:
    return settings.model_copy(update={"mlflow_uri": store, "worker_name": "w"})


@pytest.fixture
def gateway(settings: Settings, job_queue: JobQueue) -> Iterator[httpx.Client]:
    with serve(create_app(settings)) as client:
        yield client


def submit(gateway: httpx.Client, settings: Settings, **fields: Any) -> str:
    spec = job_spec(settings.data_service_addr).model_dump(mode="json") | fields
    response = gateway.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def work(settings: Settings, queue: JobQueue) -> None:
    queue.ensure_group()
    assert Worker(settings, queue).work_one(block_ms=1000)


def log_lines(queue: JobQueue, job_id: str) -> list[str]:
    return [f"{line['level']} {line['message']}" for line in queue.logs(job_id)[0]]


def runs_of(client: MlflowClient, experiment: str, job_id: str) -> list[Any]:
    held = client.get_experiment_by_name(experiment)
    assert held is not None, f"no experiment {experiment}"
    return client.search_runs([held.experiment_id], filter_string=f"tags.`{JOB_ID_TAG}` = '{job_id}'")


def test_a_job_is_a_run_with_its_params_metrics_tags_and_report(
    gateway: httpx.Client, tracked: Settings, job_queue: JobQueue, store: str, tmp_path: Path
) -> None:
    job_id = submit(gateway, tracked, name="tracked run", tags=["tiny", "experiment:sweep-a"])
    work(tracked, job_queue)
    job = gateway.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]
    assert not [line for line in log_lines(job_queue, job_id) if WARNING in line]

    client = MlflowClient(tracking_uri=store)
    [run] = runs_of(client, "sweep-a", job_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked run"
    params = run.data.params
    assert params["training.max_iters"] == "12" and params["training.learning_rate"] == "0.003"
    assert params["dataset.module"] == "text" and params["dataset.source"] == "tiny.txt"
    assert params["model.n_embd"] == "32" and params["name"] == "tracked run"
    assert json.loads(params["tags"]) == ["tiny", "experiment:sweep-a"]
    assert json.loads(params["training.betas"]) == [0.9, 0.95]
    assert "dataset.id" not in params  # unset fields are left out
    tags = run.data.tags
    assert tags[JOB_ID_TAG] == job_id and tags["simtrain.tags"] == "tiny,experiment:sweep-a"
    assert tags["simtrain.tag.tiny"] == "true" and tags["simtrain.dataset_id"] == job["dataset_id"]

    # The metrics, under the metrics API's names, at the same steps with the same values.
    rows = gateway.get(f"/v1/jobs/{job_id}/metrics").json()["metrics"]
    for name in ("train/loss", "val/loss", "lr", "tokens_per_s", "train/eval_loss"):
        api = [(int(r["step"]), r[name]) for r in rows if name in r]
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
        assert [s for s, _ in sorted(history)] == [s for s, _ in sorted(api)], name
        assert [v for _, v in sorted(history)] == pytest.approx([v for _, v in sorted(api)]), name
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == [0, 6, 12]

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"report.json", "report.png"}
    saved = client.download_artifacts(run.info.run_id, "report.json", str(tmp_path))
    report = json.loads(Path(saved).read_text())
    assert report["verdict"] == gateway.get(f"/v1/jobs/{job_id}/report").json()["verdict"]
    assert Path(client.download_artifacts(run.info.run_id, "report.png", str(tmp_path))).read_bytes()[:4] == (
        b"\x89PNG"
    )


def test_jobs_naming_no_experiment_go_into_simtrain_and_forks_are_tagged(
    gateway: httpx.Client, tracked: Settings, job_queue: JobQueue, store: str
) -> None:
    source = submit(gateway, tracked)
    work(tracked, job_queue)
    fork = gateway.post(f"/v1/jobs/{source}/fork", json={"changes": {"training": {"max_iters": 4}}})
    fork_id = fork.json()["id"]
    work(tracked, job_queue)
    client = MlflowClient(tracking_uri=store)
    [run] = runs_of(client, "simtrain", source)
    assert run.info.run_name == source[:12] and run.info.status == "FINISHED"
    [forked] = runs_of(client, "simtrain", fork_id)
    assert forked.data.tags["simtrain.forked_from"] == source and "simtrain.init_from" not in forked.data.tags
    assert forked.data.params["forked_from"] == source


def test_a_resumed_job_goes_on_in_the_same_run(tracked: Settings, job_queue: JobQueue, store: str) -> None:
    job = job_queue.submit(job_spec(tracked.data_service_addr))
    first = JobRun(job, tracked, job_queue, lambda: first.trainer.iter_num + 1 >= 5)
    with pytest.raises(JobInterrupted):
        first.run()
    client = MlflowClient(tracking_uri=store)
    [run] = runs_of(client, "simtrain", job.id)
    assert run.info.status == "SCHEDULED"  # back in the queue
    JobRun(job, tracked, job_queue, lambda: False).run()
    [again] = runs_of(client, "simtrain", job.id)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")]
    assert steps == [0, 6, 12]


def test_a_store_that_cannot_be_written_costs_a_warning_not_the_job(
    gateway: httpx.Client, settings: Settings, job_queue: JobQueue, store: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder would go\n")
    broken = settings.model_copy(update={"mlflow_uri": (blocker / "mlruns").as_uri(), "worker_name": "w"})
    job_id = submit(gateway, broken)
    work(broken, job_queue)
    assert job_queue.get(job_id).status is JobStatus.succeeded
    warnings = [line for line in log_lines(job_queue, job_id) if WARNING in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING")
    assert "could not start the job's run in MLflow at file://" in warnings[0]


def test_a_file_store_without_the_opt_in_is_refused_with_a_warning(
    gateway: httpx.Client,
    settings: Settings,
    job_queue: JobQueue,
    store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    refused = settings.model_copy(update={"mlflow_uri": store, "worker_name": "w"})
    job_id = submit(gateway, refused)
    work(refused, job_queue)
    assert job_queue.get(job_id).status is JobStatus.succeeded
    [warning] = [line for line in log_lines(job_queue, job_id) if WARNING in line]
    assert "MLFLOW_ALLOW_FILE_STORE=true" in warning
    assert not Path(store.removeprefix("file://")).exists()
