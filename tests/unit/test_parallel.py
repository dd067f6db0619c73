"""The multi-process knobs: the job spec's gpus/nodes/nproc, ranks from torchrun, the child's command."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from simtrain.jobs import JobSpec, TrainingSpec
from simtrain.settings import Settings
from trainer_service.launch import settings_env, torchrun_command
from trainer_service.parallel import Ranks, procs_per_node


def test_spec_defaults_need_no_gpu_and_one_process() -> None:
    spec = JobSpec.model_validate({"dataset": {"module": "text", "source": "tiny.txt"}})
    t = spec.training
    assert (t.gpus, t.nodes, t.nproc, t.compile) == (0, 1, 1, False)
    assert procs_per_node(t) == 1
    assert procs_per_node(TrainingSpec(gpus=4)) == 4
    assert procs_per_node(TrainingSpec(nproc=2)) == 2


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"gpus": 2, "nproc": 2}, "not both"),
        ({"gpus": 1, "device": "cpu"}, "needs device"),
        ({"nproc": 2, "device": "cuda"}, "CPU processes"),
        ({"gpus": -1}, "greater than or equal to 0"),
        ({"nodes": 0}, "greater than or equal to 1"),
        ({"nproc": 65}, "less than or equal to 64"),
    ],
)
def test_spec_refuses_contradictions_and_out_of_range_counts(training: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingSpec.model_validate(training)


def test_ranks_come_from_torchruns_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Ranks.from_env() == Ranks(0, 1, 0) and Ranks().is_main and not Ranks().distributed
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranks = Ranks.from_env()
    assert ranks == Ranks(rank=3, world_size=4, local_rank=1)
    assert ranks.distributed and not ranks.is_main


def test_the_worker_runs_the_deploy_contracts_command_with_its_own_settings() -> None:
    command = torchrun_command("abc", 2, "w1", 1234)
    assert command[1:] == [
        "-m",
        "torch.distributed.run",  # what the torchrun script runs
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "trainer_service.distributed",
        "--job-id",
        "abc",
        "--worker",
        "w1",
        "--worker-pid",
        "1234",
    ]
    settings = Settings(redis_url="redis://example:1/2", key_prefix="p:", lease_ms=5000)
    env = settings_env(settings)
    assert env["REDIS_URL"] == "redis://example:1/2"
    assert env["SIMTRAIN_KEY_PREFIX"] == "p:" and env["SIMTRAIN_LEASE_MS"] == "5000"


def test_the_ranks_read_back_the_workers_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings(
        redis_url="redis://example:1/2",
        key_prefix="p:",
        state_dir=tmp_path / "var",
        data_service_addr="dataservice:50051",
        data_service_backoff_s=0.5,
    )
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings
