"""The function trace: which training functions ran, how many times, and their total and mean time.

A missing call or a wrong count is a bug a loss curve can hide (no optimizer step, eval never run), so
the trainer records its own calls. Host work is timed with ``perf_counter``. GPU work is timed with CUDA
events, which are recorded without a sync and read once they have completed, so tracing never stalls
the pipeline.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# The functions the report expects, in the order a step calls them; others may be traced too.
FUNCTIONS = (
    "encode",
    "batch_fetch",
    "lr_schedule",
    "forward",
    "loss",
    "backward",
    "grad_clip",
    "optimizer_step",
    "eval",
    "generate",
    "checkpoint",
)

Mark = float | torch.cuda.Event


class Trace:
    """Calls and seconds per function name. ``device`` spans time the GPU's work when on CUDA."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._cuda = device is not None and device.type == "cuda"
        self._pending: deque[tuple[str, torch.cuda.Event, torch.cuda.Event]] = deque()

    def mark(self, device: bool = False) -> Mark:
        """A point in time: a recorded CUDA event for GPU work on CUDA, else the host clock."""
        if device and self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def add(self, name: str, start: Mark, end: Mark) -> None:
        """One call of ``name`` between two marks of the same kind."""
        self.calls[name] = self.calls.get(name, 0) + 1
        self.seconds.setdefault(name, 0.0)
        if isinstance(start, float) and isinstance(end, float):
            self.seconds[name] += end - start
        else:
            self._pending.append((name, start, end))  # type: ignore[arg-type]
            self._drain(block=False)

    def add_seconds(self, name: str, seconds: float, calls: int = 1) -> None:
        self.calls[name] = self.calls.get(name, 0) + calls
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def span(self, name: str, device: bool = False) -> Iterator[None]:
        start = self.mark(device)
        try:
            yield
        finally:
            self.add(name, start, self.mark(device))

    def _drain(self, block: bool) -> None:
        """Add the times of completed CUDA spans; with ``block``, wait for all of them first."""
        if block and self._pending:
            self._pending[-1][2].synchronize()
        while self._pending and self._pending[0][2].query():
            name, start, end = self._pending.popleft()
            self.seconds[name] += start.elapsed_time(end) / 1000.0

    def summary(self) -> dict[str, dict[str, float | int]]:
        """``{name: {calls, total_s, mean_s}}``: the expected functions first, listed even if never called."""
        self._drain(block=True)
        names = list(FUNCTIONS) + sorted(set(self.calls) - set(FUNCTIONS))
        out: dict[str, dict[str, float | int]] = {}
        for name in names:
            calls, total = self.calls.get(name, 0), self.seconds.get(name, 0.0)
            out[name] = {"calls": calls, "total_s": total, "mean_s": total / calls if calls else 0.0}
        return out

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed job's trace counts the whole job."""
        self._drain(block=True)
        return {"calls": dict(self.calls), "seconds": dict(self.seconds)}

    def load_state_dict(self, state: dict[str, Any], keep: tuple[str, ...] = ()) -> None:
        """Take the counts of a checkpoint; ``keep`` names functions whose counts so far are added to it
        (work this attempt did before reading the checkpoint, such as preparing the dataset)."""
        kept = {n: (self.calls.get(n, 0), self.seconds.get(n, 0.0)) for n in keep}
        self.calls = dict(state.get("calls", {}))
        self.seconds = dict(state.get("seconds", {}))
        for name, (calls, seconds) in kept.items():
            self.add_seconds(name, seconds, calls)
