"""Compare runs of several variants: which is better, by how much, and whether that is more than noise.

Pure: it takes what the job records and reports hold and returns JSON-ready data, so the gateway, the CLI
and tests use it without torch or Redis.

The measure is the final val loss, read where every counted run has one (the last evaluation step they
all reached), so variants are compared at equal optimizer steps. When variants tokenize differently, a
token is not the same amount of text, so losses are turned into bits per byte of decoded text:
``nats / ln 2 / bytes_per_token`` (the val split's bytes per token, from the data statistics).

A difference counts when it is more than twice its standard error, ``sqrt(s_a²/n_a + s_b²/n_b)`` from the
seed-to-seed standard deviations; with one seed there is no spread to judge by, and the ranking says so.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

VERDICT_ORDER = ("fit", "fit with warnings", "not fit")
CHECK_ORDER = ("skip", "pass", "warn", "fail")
SIGNIFICANCE = 2.0  # standard errors a difference must exceed to count


@dataclass(frozen=True)
class RunResult:
    """One run (a job) as the comparison needs it."""

    variant: str
    seed: int
    job_id: str
    status: str | None  # the job's status; None when its record is gone
    error: str | None = None
    spec: dict[str, Any] | None = None  # the job spec, as JSON
    report: dict[str, Any] | None = None
    val_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val loss in nats per token)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out |= _flatten(value, f"{prefix}.{key}" if prefix else key)
    return out


# What labels a run for people and never changes how it trains: not a difference between variants.
LABELS = ("name", "tags")


def spec_differences(specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Dotted field → value per variant, for the fields whose values are not the same in every variant
    (the seed left out: it differs by design; and the labels, which change nothing)."""
    flat = {name: _flatten(spec) for name, spec in specs.items()}
    keys = sorted(
        {k for f in flat.values() for k in f if k != "training.seed" and k.split(".")[0] not in LABELS}
    )
    diffs = {}
    for key in keys:
        values = {name: f.get(key) for name, f in flat.items()}
        if len({repr(v) for v in values.values()}) > 1:
            diffs[key] = values
    return diffs


def _tokenizer(run: RunResult) -> str | None:
    if run.report and isinstance(run.report.get("dataset"), dict) and run.report["dataset"].get("tokenizer"):
        return run.report["dataset"]["tokenizer"]
    dataset = (run.spec or {}).get("dataset") or {}
    return dataset.get("tokenizer") if not dataset.get("id") else None


def bytes_per_token(run: RunResult) -> float | None:
    """The val split's UTF-8 bytes per token from the run's report (None: not measured)."""
    value = ((run.report or {}).get("data") or {}).get("val_bytes_per_token")
    return value if isinstance(value, int | float) and value > 0 else None


def _tokens_per_step(run: RunResult) -> int | None:
    training = (run.spec or {}).get("training") or {}
    try:
        world = max(training.get("gpus", 0) or training.get("nproc", 1), 1) * training.get("nodes", 1)
        return int(training["batch_size"]) * int(training["block_size"]) * world
    except (KeyError, TypeError, ValueError):
        return None


def _why_not_counted(run: RunResult) -> str | None:
    """Why a run gives no loss to compare (None: it does)."""
    if run.status is None:
        return "its job was deleted"
    if run.status != "succeeded":
        detail = f": {run.error}" if run.error else ""
        return f"it {run.status}{detail}" if run.status in ("failed", "cancelled") else f"it is {run.status}"
    if run.report and run.report.get("stopped_early"):
        return f"training stopped early: {run.report['stopped_early']}"
    if not any(math.isfinite(loss) for _, loss in run.val_curve):
        return "it logged no finite val loss"
    return None


def _loss_at(curve: list[tuple[int, float]], step: int) -> float | None:
    """The last finite val loss evaluated at or before ``step``."""
    points = [(s, v) for s, v in curve if s <= step and math.isfinite(v)]
    return max(points)[1] if points else None


def _worst(verdicts: list[str | None], order: tuple[str, ...]) -> str | None:
    known = [v for v in verdicts if v in order]
    return max(known, key=order.index) if known else None


def _spread(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _versus(better: dict[str, Any], worse: dict[str, Any], unit: str) -> dict[str, Any]:
    """How far ``better`` is ahead of ``worse``, and whether that is more than the seeds' noise."""
    delta = worse["mean"] - better["mean"]
    out: dict[str, Any] = {"variant": worse["name"], "delta": delta, "stderr": None, "significant": None}
    if better["std"] is None or worse["std"] is None:
        out["text"] = (
            f"{better['name']} is ahead of {worse['name']} by {delta:.3f} {unit}, but with one seed there is "
            "no spread to tell it from noise"
        )
        return out
    stderr = math.sqrt(better["std"] ** 2 / better["n"] + worse["std"] ** 2 / worse["n"])
    significant = delta > SIGNIFICANCE * stderr
    out |= {"stderr": stderr, "significant": significant}
    if significant:
        out["text"] = f"{better['name']} beats {worse['name']} by {delta:.3f} ± {stderr:.3f} {unit}"
    else:
        out["text"] = (
            f"{better['name']} and {worse['name']} are within noise: {delta:.3f} ± {stderr:.3f} {unit} "
            f"(not over {SIGNIFICANCE:g} standard errors)"
        )
    return out


DATA_ROWS = (
    ("tokenizer", lambda r: _tokenizer(r)),
    ("vocab size", lambda r: (r.report or {}).get("data", {}).get("vocab_size")),
    ("packing", lambda r: (r.report or {}).get("data", {}).get("packing")),
    ("train tokens", lambda r: ((r.report or {}).get("data", {}).get("tokens") or {}).get("train")),
    ("val tokens", lambda r: ((r.report or {}).get("data", {}).get("tokens") or {}).get("val")),
    ("train examples", lambda r: ((r.report or {}).get("data", {}).get("examples") or {}).get("train")),
    ("val bytes per token", bytes_per_token),
    ("mean example tokens", lambda r: ((r.report or {}).get("data", {}).get("lengths") or {}).get("mean")),
    ("duplicate examples", lambda r: (r.report or {}).get("data", {}).get("duplicate_examples")),
    ("train/val overlap", lambda r: (r.report or {}).get("data", {}).get("train_val_overlap")),
    (
        "val tokens unseen in train",
        lambda r: (r.report or {}).get("data", {}).get("val_tokens_unseen_in_train"),
    ),
)


def compare(runs: list[RunResult], specs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The comparison of ``runs`` grouped by variant (in first-seen order); ``specs`` are the variants'
    job specs for the differences (default: each variant's first run's spec)."""
    by_variant: dict[str, list[RunResult]] = {}
    for run in runs:
        by_variant.setdefault(run.variant, []).append(run)
    counted = [r for r in runs if _why_not_counted(r) is None]
    notes: list[str] = []

    tokenizers = {_tokenizer(r) for r in counted}
    unit, scale_by_bytes = "nats", False
    if len(tokenizers) > 1:
        missing = [r for r in counted if bytes_per_token(r) is None]
        if missing:
            notes.append(
                f"the variants use different tokenizers ({', '.join(sorted(map(str, tokenizers)))}), but "
                f"{len(missing)} run(s) have no val bytes per token (a dataset prepared before it was "
                "measured; prepare it again): losses stay in nats per token and are not comparable as such"
            )
        else:
            unit, scale_by_bytes = "bits per byte", True
            notes.append(
                f"the variants use different tokenizers ({', '.join(sorted(map(str, tokenizers)))}), so "
                "losses are compared in bits per byte of decoded val text, not nats per token"
            )

    last_steps = [max(s for s, v in r.val_curve if math.isfinite(v)) for r in counted]
    common_step = min(last_steps) if last_steps else None
    if common_step is not None and len(set(last_steps)) > 1:
        notes.append(f"runs reached different last evaluations; each is read at step {common_step}")
    tokens_seen = {r.variant: t * common_step for r in counted if (t := _tokens_per_step(r)) and common_step}
    if len(set(tokens_seen.values())) > 1:
        notes.append(
            "variants see different numbers of tokens per step (batch size × block size); they are compared "
            "at equal steps, not equal tokens"
        )

    variants = []
    for name, group in by_variant.items():
        values = []
        for run in group:
            if _why_not_counted(run) is None and common_step is not None:
                loss = _loss_at(run.val_curve, common_step)
                if loss is not None:
                    bpt = bytes_per_token(run)
                    values.append(loss / math.log(2) / bpt if scale_by_bytes and bpt else loss)
        accuracies = [
            a["accuracy"]
            for r in group
            if isinstance(a := (r.report or {}).get("accuracy"), dict)
            and isinstance(a.get("accuracy"), int | float)
        ]
        verdicts = [(r.report or {}).get("verdict") for r in group]
        first_report = next((r for r in group if r.report), group[0])
        variants.append(
            {
                "name": name,
                "n": len(values),
                "values": values,
                "mean": statistics.fmean(values) if values else None,
                "std": _spread(values),
                "accuracy": statistics.fmean(accuracies) if accuracies else None,
                "verdict": _worst(verdicts, VERDICT_ORDER),
                "tokens_seen": tokens_seen.get(name),
                "runs": [
                    {
                        "seed": r.seed,
                        "job_id": r.job_id,
                        "status": r.status,
                        "verdict": (r.report or {}).get("verdict"),
                        "summary": (r.report or {}).get("summary"),
                        "not_counted": _why_not_counted(r),
                    }
                    for r in group
                ],
                "data": {label: read(first_report) for label, read in DATA_ROWS},
            }
        )

    ranked = sorted((v for v in variants if v["mean"] is not None), key=lambda v: v["mean"])
    unranked = [v for v in variants if v["mean"] is None]
    ranking = []
    for place, v in enumerate(ranked, start=1):
        entry = {"place": place, "variant": v["name"], "mean": v["mean"], "std": v["std"], "n": v["n"]}
        if place > 1:
            entry["behind_best"] = _versus(ranked[0], v, unit)
            entry["behind_previous"] = _versus(ranked[place - 2], v, unit)
        ranking.append(entry)
    for v in unranked:
        reasons = sorted({r["not_counted"] for r in v["runs"] if r["not_counted"]})
        ranking.append(
            {
                "place": None,
                "variant": v["name"],
                "verdict": v["verdict"],
                "why": "; ".join(reasons) or "no loss",
            }
        )

    return {
        "unit": unit,
        "common_step": common_step,
        "complete": all(r.status in ("succeeded", "failed", "cancelled", None) for r in runs),
        "notes": notes,
        "summary": _summary(ranked, unranked, unit),
        "ranking": ranking,
        "variants": variants,
        "checks": _checks_side_by_side(by_variant),
        "data": {label: {v["name"]: v["data"][label] for v in variants} for label, _ in DATA_ROWS},
        "differences": spec_differences(specs or _first_specs(by_variant)),
    }


def _first_specs(by_variant: dict[str, list[RunResult]]) -> dict[str, dict[str, Any]]:
    return {name: next((r.spec for r in group if r.spec), {}) or {} for name, group in by_variant.items()}


def _summary(ranked: list[dict[str, Any]], unranked: list[dict[str, Any]], unit: str) -> str:
    """One sentence a person reads first."""
    cannot = f"; {', '.join(v['name'] for v in unranked)} gave no loss to compare" if unranked else ""
    if not ranked:
        return "no variant gave a val loss to compare" + cannot
    if len(ranked) == 1:
        return f"only {ranked[0]['name']} gave a val loss ({ranked[0]['mean']:.3f} {unit}){cannot}"
    return _versus(ranked[0], ranked[1], unit)["text"] + cannot


def _checks_side_by_side(by_variant: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    """Each check's verdict per variant: the worst over its seeds, and how many seeds had each verdict."""
    rows: dict[str, dict[str, Any]] = {}
    for name, group in by_variant.items():
        for run in group:
            for check in (run.report or {}).get("checks") or []:
                row = rows.setdefault(
                    check["name"], {"name": check["name"], "title": check.get("title"), "variants": {}}
                )
                cell = row["variants"].setdefault(name, {"worst": None, "counts": {}, "reason": None})
                verdict = check.get("verdict")
                cell["counts"][verdict] = cell["counts"].get(verdict, 0) + 1
                if cell["worst"] is None or (
                    verdict in CHECK_ORDER and CHECK_ORDER.index(verdict) > CHECK_ORDER.index(cell["worst"])
                ):
                    cell["worst"], cell["reason"] = verdict, check.get("reason")
    return list(rows.values())
