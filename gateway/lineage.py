"""Whether a job can start from another job's checkpoint (``init_from``), told before it is queued.

The trainer checks again when the fork starts (it compares the checkpoint's own model config, vocabulary
included); what the gateway can tell from the two specs it refuses up front, so a mismatch is a 422 at
submit and not a failed job minutes later.
"""

from __future__ import annotations

from pathlib import Path

from simtrain.jobs import JobSpec, JobView


def checkpoint_path(jobs_dir: Path, job_id: str) -> Path:
    """Where a job's latest checkpoint lives (the trainer writes it, ``GET .../checkpoint`` serves it)."""
    return jobs_dir / job_id / "checkpoint.pt"


def no_checkpoint(source: JobView) -> str:
    """Why a job with no checkpoint cannot be started from, and what to do instead."""
    if source.status.finished:
        when = f"it {source.status.value} before its first evaluation saved one, and none will come"
    else:
        when = f"it is {source.status.value} and saves one at its first evaluation"
    return (
        f"job {source.id} has no checkpoint to start from: {when}; fork it without starting from its "
        "checkpoint (fresh weights), or wait for one"
    )


def shape_mismatches(source: JobSpec, spec: JobSpec, prefix: str = "") -> list[tuple[str, str]]:
    """(field, message) for each model size the checkpoint's weights cannot be loaded into."""
    problems = []
    names = ("n_layer", "n_head", "n_embd")
    for name, theirs, ours in zip(names, source.model.sizes(), spec.model.sizes(), strict=True):
        if theirs != ours:
            problems.append((f"{prefix}model.{name}", f"the checkpoint has {name} {theirs}, this job {ours}"))
    if source.training.block_size != spec.training.block_size:
        problems.append(
            (
                f"{prefix}training.block_size",
                f"the checkpoint has block_size {source.training.block_size} (its position embeddings), "
                f"this job {spec.training.block_size}",
            )
        )
    return problems


def init_from_problems(
    spec: JobSpec, source: JobView | None, jobs_dir: Path, prefix: str = ""
) -> list[tuple[str, str]]:
    """(field, message) for each reason ``spec`` cannot start from its ``init_from`` job, ``source``."""
    if spec.init_from is None:
        return []
    field = f"{prefix}init_from"
    if source is None:
        return [(field, f"no job with id {spec.init_from}")]
    if source.spec is None:
        return [(field, f"job {source.id}'s spec cannot be read, so its model is unknown")]
    if not checkpoint_path(jobs_dir, source.id).is_file():
        return [(field, no_checkpoint(source))]
    return shape_mismatches(source.spec, spec, prefix)
