"""Side-by-side timing for the benchmarks: calls taking turns, so noise on the machine lands on all alike."""

from __future__ import annotations

import time
from collections.abc import Callable


def alternating(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each call, ``rounds`` times each: the calls take turns, in reverse order every other round,
    so a burst of load elsewhere lands on all of them alike (take the median of each list)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(rounds):
        for name, call in list(calls.items())[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times
