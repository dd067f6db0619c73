"""Which process this is in a torchrun job, and the few collectives the job runner needs.

Every helper is a no-op for a single process, so the job runner has one code path for both. Collectives
must be called by every rank at the same point; the runner only calls them at steps all ranks agree on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from simtrain.jobs import TrainingSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        """What torchrun tells each process it starts."""
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics, checkpoints and the report; the others only train."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def procs_per_node(training: TrainingSpec) -> int:
    """Processes torchrun starts on each node: one per GPU, or ``nproc`` CPU processes for gloo."""
    return training.gpus if training.gpus > 0 else training.nproc


class RemoteError(RuntimeError):
    """Rank 0 failed at something it did for all ranks; this is its message, on another rank.

    Rank 0 records that failure itself, so the other ranks leave the job record alone.
    """


def on_main(ranks: Ranks, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 and hand its result (or its failure) to every rank."""
    if not ranks.distributed:
        return fn()
    result: list[Any] = [None]
    if ranks.is_main:
        try:
            result[0] = ("ok", fn())
        except Exception as e:
            result[0] = ("error", str(e))
            dist.broadcast_object_list(result, src=0)
            raise
    dist.broadcast_object_list(result, src=0)
    kind, value = result[0]
    if kind == "error":
        raise RemoteError(value) from None
    return value


def all_gather(ranks: Ranks, obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ranks.distributed:
        return [obj]
    out: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_floats(
    ranks: Ranks, values: list[float | torch.Tensor], device: torch.device
) -> list[list[float]]:
    """Every rank's ``values`` (floats or 0-dim tensors), in rank order: one small collective, one sync."""
    local = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device).detach() for v in values])
    if not ranks.distributed:
        return [local.tolist()]
    out = [torch.empty_like(local) for _ in range(ranks.world_size)]
    dist.all_gather(out, local)
    return [t.tolist() for t in out]
