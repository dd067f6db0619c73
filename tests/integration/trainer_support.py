"""What the trainer's integration tests share: a real data service on the demo corpus, settings, specs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_service.server import serve
from simtrain.cli import DEMO_CORPUS
from simtrain.jobs import JobSpec
from simtrain.settings import Settings
from trainer_service.checkpoint import load_checkpoint


@dataclass
class DataService:
    settings: Settings  # data root and state dir under a temporary directory, the service's address
    address: str


def start_data_service(root: Path) -> Iterator[DataService]:
    """A data service on a free port serving ``tiny.txt`` (the demo corpus), until the generator closes."""
    (root / "data").mkdir()
    shutil.copyfile(DEMO_CORPUS, root / "data" / "tiny.txt")
    settings = Settings(data_root=root / "data", state_dir=root / "var")
    server, port = serve(settings, port=0)
    try:
        yield DataService(settings, f"127.0.0.1:{port}")
    finally:
        server.stop(None)


def job_spec(address: str, *, dropout: float = 0.0, **training: Any) -> JobSpec:
    """A job small enough to train in about a second on one CPU core."""
    p = {"embd_pdrop": dropout, "resid_pdrop": dropout, "attn_pdrop": dropout}
    return JobSpec.model_validate(
        {
            "dataset": {"module": "text", "source": "tiny.txt"},
            "data_service": address,
            "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, **p},
            "training": {
                "max_iters": 12,
                "batch_size": 4,
                "block_size": 32,
                "learning_rate": 3e-3,
                "eval_interval": 6,
                "eval_iters": 2,
                "log_interval": 2,
                "seed": 7,
            }
            | training,
        }
    )


def final_weights(settings: Settings, job_id: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(settings.jobs_dir / job_id / "checkpoint.pt")
    assert state is not None, f"job {job_id} left no checkpoint"
    return state["model"]
