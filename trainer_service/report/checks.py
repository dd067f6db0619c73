"""A check's verdict, and the report's verdict from all of them.

Every check gives pass, warn, fail or skip, a one-line reason a person can act on, the number it measured
and the threshold it compared that number with (and the ``checks`` field of the job spec that sets it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    passed = "pass"
    warn = "warn"
    fail = "fail"
    skip = "skip"  # the check does not apply, or its measurement is missing


FIT, FIT_WITH_WARNINGS, NOT_FIT = "fit", "fit with warnings", "not fit"
_ORDER = {Verdict.fail: 0, Verdict.warn: 1, Verdict.passed: 2, Verdict.skip: 3}


@dataclass(frozen=True)
class Check:
    name: str
    section: str  # "data", "trace" or "recipe"
    title: str  # what is checked, in a few words
    verdict: Verdict
    reason: str
    value: float | int | None = None
    threshold: str | None = None  # e.g. "warn > 0.01, fail > 0.2"
    setting: str | None = None  # e.g. "checks.empty_warn, checks.empty_fail"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}


def grade(value: float, warn: float | None, fail: float | None, higher_is_worse: bool = True) -> Verdict:
    """pass/warn/fail for ``value`` against thresholds (None: that level is off)."""

    def crosses(limit: float | None) -> bool:
        if limit is None:
            return False
        return value > limit if higher_is_worse else value < limit

    if crosses(fail):
        return Verdict.fail
    return Verdict.warn if crosses(warn) else Verdict.passed


def ordered(checks: list[Check]) -> list[Check]:
    """Failing checks first, then warnings, passes and skips; each group in its original order."""
    return sorted(checks, key=lambda c: _ORDER[c.verdict])


def overall(checks: list[Check]) -> dict[str, Any]:
    """The report's verdict: not fit if any check fails, fit with warnings if any warns, else fit."""
    failing = [c.name for c in checks if c.verdict is Verdict.fail]
    warning = [c.name for c in checks if c.verdict is Verdict.warn]
    if failing:
        verdict = NOT_FIT
        first = next(c for c in checks if c.verdict is Verdict.fail)
        said = "" if len(failing) == 1 else f" ({len(failing)} checks fail; this is the first)"
        summary = f"{first.title} fails{said}: {first.reason}"
    elif warning:
        verdict = FIT_WITH_WARNINGS
        summary = f"every check passes but {len(warning)} warn: {', '.join(warning)}"
    else:
        verdict = FIT
        summary = "every check passes"
    return {"verdict": verdict, "summary": summary, "failing": failing, "warnings": warning}
