"""Checkpoints through a whole job: a job stopped mid-way and resumed ends bit-identical to one never stopped.

Real Redis and a real data service; the job is run by ``JobRun`` in this process, stopped through its
``should_stop`` hook (what a worker's SIGTERM sets), and resumed by a second ``JobRun``.
"""

from __future__ import annotations

import pytest
import torch

from simtrain.jobs import JobSpec
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.trainer_support import DataService, final_weights, job_spec
from trainer_service.checkpoint import load_checkpoint
from trainer_service.data_client import DataClient
from trainer_service.device import cpu_bf16_supported
from trainer_service.job_runner import JobInterrupted, JobRun
from trainer_service.model import GPT, GPTConfig

STOP_AT = 5  # not a logging step: a worker's stop lands between them
MAX_ITERS = 12


def spec(settings: Settings, address: str, precision: str = "auto") -> JobSpec:
    # Dropout on, so the RNG state must come back too; cosine with warmup, so the step count must too.
    return job_spec(
        address, dropout=0.1, max_iters=MAX_ITERS, lr_schedule="cosine", warmup_iters=3, precision=precision
    )


CPU_BF16 = pytest.mark.skipif(not cpu_bf16_supported(), reason="no bf16 on this CPU")


@pytest.fixture
def train_streams(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(start_step, num_steps) of every train-split stream a job opens to train on (not the report's probes,
    which run past max_iters)."""
    opened: list[tuple[int, int]] = []
    original = DataClient.batches

    def spy(self, dataset_id, split, batch_size, block_size, seed, start_step, num_steps, **kw):
        training = num_steps > 2 and start_step + num_steps <= MAX_ITERS  # eval streams are 2 long
        if split == "train" and training:
            opened.append((start_step, num_steps))
        return original(self, dataset_id, split, batch_size, block_size, seed, start_step, num_steps, **kw)

    monkeypatch.setattr(DataClient, "batches", spy)
    return opened


@pytest.mark.parametrize("precision", ["auto", pytest.param("bf16", marks=CPU_BF16)])
def test_resumed_job_is_bit_identical_to_an_uninterrupted_one(
    settings: Settings, data_service: DataService, job_queue: JobQueue, train_streams: list, precision: str
):
    """On CPU in float32 (the default) and under bf16 autocast alike."""
    straight = job_queue.submit(spec(settings, data_service.address, precision))
    straight_report = JobRun(straight, settings, job_queue, lambda: False).run()
    assert straight_report["speed"]["precision"] == ("bf16" if precision == "bf16" else "fp32")

    job = job_queue.submit(spec(settings, data_service.address, precision))
    first = JobRun(job, settings, job_queue, lambda: first.trainer.iter_num + 1 >= STOP_AT)
    with pytest.raises(JobInterrupted):
        first.run()
    saved = load_checkpoint(settings.jobs_dir / job.id / "checkpoint.pt")
    assert saved["step"] == STOP_AT and saved["data"]["next_step"] == STOP_AT

    torch.manual_seed(12345)  # whatever ran in between moved the global RNG on
    report = JobRun(job, settings, job_queue, lambda: False).run()

    straight_weights, resumed_weights = final_weights(settings, straight.id), final_weights(settings, job.id)
    assert list(straight_weights) == list(resumed_weights)
    for name, value in straight_weights.items():
        assert torch.equal(value, resumed_weights[name]), name
    # The resumed run asked the data service for step STOP_AT on: no batch was replayed or skipped.
    assert train_streams == [(0, MAX_ITERS), (0, MAX_ITERS), (STOP_AT, MAX_ITERS - STOP_AT)]
    assert report["final"] == straight_report["final"]
    assert [s for s, _ in report["curve"]["val"]] == [0, 6, 12]


def test_checkpoint_holds_everything_and_loads_weights_only(
    settings: Settings, data_service: DataService, job_queue: JobQueue
):
    job = job_queue.submit(spec(settings, data_service.address))
    JobRun(job, settings, job_queue, lambda: False).run()
    path = settings.jobs_dir / job.id / "checkpoint.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)  # data, never code to unpickle
    assert {"model", "model_config", "optimizer", "step", "rng", "data", "curve", "latest"} <= set(state)
    assert state["step"] == 12
    assert state["data"] == {
        "dataset_id": job_queue.get(job.id).dataset_id,
        "split": "train",
        "seed": 7,
        "batch_size": 4,
        "block_size": 32,
        "world_size": 1,
        "next_step": 12,
    }
    assert set(state["rng"][0]) == {"cpu"}
    # The weights are a plain minGPT state_dict: they load strictly into a fresh model (and into minGPT).
    model = GPT(GPTConfig(**state["model_config"]))
    assert len(state["optimizer"]["state"]) == len(list(model.parameters()))
    model.load_state_dict(state["model"], strict=True)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state["model"])
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary behind
