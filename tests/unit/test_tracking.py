"""The MLflow tracking helpers: the spec as params, the run's tags and status, the experiment a job names."""

from __future__ import annotations

import redis

from simtrain.jobs import JobRecord, JobSpec, JobStatus, Progress
from simtrain.queue import LeaseLost
from simtrain.settings import Settings
from trainer_service.launch import settings_env
from trainer_service.outcome import JobCancelled, JobInterrupted
from trainer_service.tracking import experiment_of, flat_params, run_status, run_tags

SPEC = {"dataset": {"module": "text", "source": "a.txt", "options": {"val_fraction": 0.2, "odd key/x": "1"}}}


def test_the_spec_flattens_into_dotted_params():
    params = flat_params(JobSpec.model_validate(SPEC | {"tags": ["a"], "name": "n"}))
    assert params["dataset.source"] == "a.txt" and params["training.max_iters"] == "300"
    assert params["dataset.options.val_fraction"] == "0.2"
    assert params["dataset.options.odd key_x"] == "1"  # a key MLflow would refuse, made one it takes
    assert params["training.betas"] == "[0.9, 0.95]" and params["tags"] == '["a"]'
    assert params["model.model_type"] == "gpt-nano" and "model.n_layer" not in params  # unset: left out
    assert params["training.compile"] == "false" and params["checks.gap_warn"] == "0.5"
    assert all(isinstance(v, str) for v in params.values())


def test_run_tags_carry_the_job_its_tags_and_lineage():
    spec = JobSpec.model_validate(SPEC | {"tags": ["lr", "v:2"], "forked_from": "ab" * 16})
    job = JobRecord(id="cd" * 16, status=JobStatus.queued, spec=spec, progress=Progress(max_iters=300))
    tags = run_tags(job)
    assert tags["simtrain.job_id"] == "cd" * 16 and tags["simtrain.tags"] == "lr,v:2"
    assert tags["simtrain.tag.lr"] == "true" and tags["simtrain.tag.v_2"] == "true"
    assert tags["simtrain.forked_from"] == "ab" * 16 and "simtrain.init_from" not in tags


def test_the_experiment_comes_from_an_experiment_tag():
    assert experiment_of(JobSpec.model_validate(SPEC | {"tags": ["x", "experiment:lr-sweep"]})) == "lr-sweep"
    assert experiment_of(JobSpec.model_validate(SPEC | {"tags": ["experiment:"]})) is None
    assert experiment_of(JobSpec.model_validate(SPEC)) is None


def test_how_a_job_ends_is_the_runs_status():
    assert run_status(None) == "FINISHED"
    assert run_status(JobCancelled("x")) == "KILLED"
    assert run_status(JobInterrupted("x")) == "SCHEDULED"
    assert run_status(redis.ConnectionError("x")) == "SCHEDULED"
    assert run_status(LeaseLost("j", 1, "write")) is None
    assert run_status(RuntimeError("boom")) == "FAILED"


def test_the_uri_comes_from_the_environment_and_reaches_torchrun_ranks(monkeypatch):
    assert Settings().mlflow_uri is None and "SIMTRAIN_MLFLOW_URI" not in settings_env(Settings())
    monkeypatch.setenv("SIMTRAIN_MLFLOW_URI", "http://mlflow:5000")
    assert Settings().mlflow_uri == "http://mlflow:5000"
    assert settings_env(Settings())["SIMTRAIN_MLFLOW_URI"] == "http://mlflow:5000"
