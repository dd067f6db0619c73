"""The comparison: ranking with noise against a clear win, bits per byte across tokenizers, equal steps,
and variants that could not train kept with their verdict."""

from __future__ import annotations

import math

import pytest

from simtrain.compare import RunResult, compare, spec_differences


def run(
    variant: str,
    seed: int,
    final: float,
    *,
    tokenizer: str = "char",
    bpt: float | None = 1.0,
    steps: int = 100,
    status: str = "succeeded",
    verdict: str = "fit",
    checks=None,
    accuracy=None,
) -> RunResult:
    report = {
        "verdict": verdict,
        "dataset": {"tokenizer": tokenizer},
        "data": {"val_bytes_per_token": bpt, "vocab_size": 40, "tokens": {"train": 900, "val": 100}},
        "checks": checks or [{"name": "finite", "title": "finite", "verdict": "pass", "reason": "ok"}],
        "accuracy": {"accuracy": accuracy} if accuracy is not None else None,
    }
    spec = {
        "dataset": {"tokenizer": tokenizer},
        "training": {"batch_size": 4, "block_size": 16, "seed": seed},
    }
    curve = [(0, 4.0), (steps // 2, (4.0 + final) / 2), (steps, final)]
    return RunResult(variant, seed, f"{variant}{seed}", status, spec=spec, report=report, val_curve=curve)


def test_a_clear_win_beats_and_says_by_how_much() -> None:
    runs = [run("A", 0, 2.00), run("A", 1, 2.02), run("B", 0, 1.80), run("B", 1, 1.81)]
    result = compare(runs)
    assert [r["variant"] for r in result["ranking"]] == ["B", "A"]
    behind = result["ranking"][1]["behind_best"]
    assert behind["significant"] is True
    assert behind["delta"] == pytest.approx(0.205)
    sd_a, sd_b = math.sqrt(2 * 0.01**2), math.sqrt(2 * 0.005**2)  # sample stdevs of two values
    assert behind["stderr"] == pytest.approx(math.sqrt(sd_a**2 / 2 + sd_b**2 / 2))
    assert result["summary"].startswith("B beats A by 0.205 ± ")
    assert result["unit"] == "nats"


def test_a_difference_inside_the_seed_spread_is_within_noise() -> None:
    runs = [run("A", 0, 2.0), run("A", 1, 2.4), run("B", 0, 1.9), run("B", 1, 2.3)]
    result = compare(runs)
    assert result["ranking"][1]["behind_best"]["significant"] is False
    assert "within noise" in result["summary"]


def test_one_seed_cannot_tell_noise() -> None:
    result = compare([run("A", 0, 2.0), run("B", 0, 1.0)])
    assert result["ranking"][1]["behind_best"]["significant"] is None
    assert "one seed" in result["summary"]


def test_different_tokenizers_compare_in_bits_per_byte() -> None:
    # The byte tokenizer's token is a third of the char one's text here: its loss per token is lower,
    # but per byte it is worse.
    runs = [run("char", s, 1.5, bpt=1.0) for s in (0, 1)] + [
        run("bpe", s, 3.0, tokenizer="bpe", bpt=3.0) for s in (0, 1)
    ]
    runs[1] = run("char", 1, 1.52, bpt=1.0)
    runs[3] = run("bpe", 1, 3.03, tokenizer="bpe", bpt=3.0)
    result = compare(runs)
    assert result["unit"] == "bits per byte"
    assert any("bits per byte" in note for note in result["notes"])
    means = {v["name"]: v["mean"] for v in result["variants"]}
    assert means["char"] == pytest.approx(1.51 / math.log(2))
    assert means["bpe"] == pytest.approx(3.015 / math.log(2) / 3.0)
    assert result["ranking"][0]["variant"] == "bpe"


def test_missing_bytes_per_token_stays_in_nats_and_says_why() -> None:
    result = compare([run("char", 0, 1.5), run("bpe", 0, 3.0, tokenizer="bpe", bpt=None)])
    assert result["unit"] == "nats"
    assert "prepare it again" in result["notes"][0]


def test_runs_are_read_at_the_common_last_step() -> None:
    short = RunResult("B", 0, "b0", "succeeded", report={"verdict": "fit"}, val_curve=[(0, 4.0), (50, 2.5)])
    result = compare([run("A", 0, 1.0), short])
    assert result["common_step"] == 50
    assert {v["name"]: v["mean"] for v in result["variants"]}["A"] == pytest.approx(2.5)


def test_variants_that_cannot_train_stay_with_their_verdict() -> None:
    refused = RunResult(
        "broken",
        0,
        "x0",
        "failed",
        error="not fit, nothing was trained",
        report={
            "verdict": "not fit",
            "stopped_early": "the data service cannot prepare it",
            "checks": [{"name": "batches_served", "verdict": "fail", "reason": "refused"}],
        },
    )
    result = compare([run("A", 0, 2.0), run("A", 1, 2.1), refused])
    names = [v["name"] for v in result["variants"]]
    assert names == ["A", "broken"]
    last = result["ranking"][-1]
    assert last["variant"] == "broken" and last["place"] is None and last["verdict"] == "not fit"
    assert "failed" in last["why"]
    assert "broken gave no loss" in result["summary"]
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["batches_served"]["variants"]["broken"]["worst"] == "fail"
    assert checks["finite"]["variants"]["A"]["counts"] == {"pass": 2}


def test_checks_accuracy_and_verdict_side_by_side() -> None:
    warn = [{"name": "finite", "title": "finite", "verdict": "warn", "reason": "one step was not"}]
    runs = [
        run("A", 0, 2.0, accuracy=0.5),
        run("A", 1, 2.0, checks=warn, verdict="fit with warnings", accuracy=0.7),
    ]
    variant = compare(runs)["variants"][0]
    assert variant["verdict"] == "fit with warnings"
    assert variant["accuracy"] == pytest.approx(0.6)
    cell = compare(runs)["checks"][0]["variants"]["A"]
    assert cell == {"worst": "warn", "counts": {"pass": 1, "warn": 1}, "reason": "one step was not"}


def test_spec_differences_name_only_what_differs() -> None:
    specs = {
        "a": {"dataset": {"tokenizer": "char", "source": "x"}, "training": {"seed": 0}},
        "b": {"dataset": {"tokenizer": "byte", "source": "x"}, "training": {"seed": 1}},
    }
    assert spec_differences(specs) == {"dataset.tokenizer": {"a": "char", "b": "byte"}}
