"""Checkpoints are data, never code: a crafted checkpoint is refused without running anything, and no code
in the project unpickles (or otherwise deserialises into code) what it reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.trainer_support import DataService, job_spec
from trainer_service.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainer_service.job_runner import JobRun
from trainer_service.outcome import run_to_outcome

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("simtrain", "trainer_service", "data_service", "gateway", "bench", "examples", "deploy")


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: harmless here, but it could be any call at all."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"format": 2, "model": {"w": torch.zeros(2)}, "step": Payload(marker)}, path)
    return path


def test_the_payload_runs_when_unpickled_unsafely(tmp_path: Path):
    """The control: loaded the unsafe way, the file does run its code."""
    marker = tmp_path / "pwned"
    torch.load(malicious_checkpoint(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="evil.pt is refused: it holds objects other than tensors"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_job_resuming_from_a_malicious_checkpoint_fails_with_the_reason(
    settings: Settings, data_service: DataService, job_queue: JobQueue
):
    job = job_queue.submit(job_spec(data_service.address))
    marker = settings.state_dir / f"pwned-{job.id}"
    path = settings.jobs_dir / job.id / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    malicious_checkpoint(path, marker)
    outcome = run_to_outcome(job.id, lambda: JobRun(job, settings, job_queue, lambda: False).run())
    assert outcome.status == "failed" and "checkpoint.pt is refused" in outcome.error
    assert not marker.exists()


def test_corrupt_and_non_checkpoint_files_are_refused(tmp_path: Path):
    save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.ones(3)}})
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt is not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a dict"):
        load_checkpoint(tmp_path / "list.pt")
    assert load_checkpoint(tmp_path / "missing.pt") is None


def test_a_refused_fence_keeps_the_old_checkpoint(tmp_path: Path):
    save_checkpoint(tmp_path / "c.pt", {"step": 1})

    def not_owner() -> None:
        raise RuntimeError("a newer attempt owns the job")

    with pytest.raises(RuntimeError, match="newer attempt"):
        save_checkpoint(tmp_path / "c.pt", {"step": 2}, before_replace=not_owner)
    assert load_checkpoint(tmp_path / "c.pt") == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def unsafe_loads(tree: ast.AST) -> list[str]:
    """Calls in ``tree`` that deserialise into objects (code): unpickling, and unsafe YAML or numpy loads."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if name == "torch.load" and keywords.get("weights_only") != "True":
            found.append(f"{name} without weights_only=True")
        elif name.startswith(("pickle.", "cPickle.", "dill.", "marshal.", "shelve.")) and "load" in name:
            found.append(name)
        elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            found.append(name)
        elif name in ("np.load", "numpy.load") and keywords.get("allow_pickle") == "True":
            found.append(f"{name} with allow_pickle=True")
    return found


def test_no_code_in_the_project_unpickles_what_it_reads():
    offenders = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found = unsafe_loads(ast.parse(path.read_text(), filename=str(path)))
            if found:
                offenders[str(path.relative_to(REPO))] = found
    assert not offenders
    # The check itself finds what it looks for.
    assert unsafe_loads(ast.parse("torch.load(f)\npickle.loads(b)\nyaml.load(s)")) == [
        "torch.load without weights_only=True",
        "pickle.loads",
        "yaml.load",
    ]
