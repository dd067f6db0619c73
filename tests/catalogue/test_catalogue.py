"""The catalogue of broken data: each broken dataset gets the check that names its fault; good data passes.

Broken modules come from the catalogue plugin (entry points); broken batches from a misbehaving data
service. Every job trains a tiny model for a few hundred steps with the default thresholds.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.catalogue.conftest import Catalogue

PAIRS_SMALL = {"block_size": 16, "batch_size": 32, "max_iters": 300}

# (dataset, misbehaving-service corruption, training overrides, the check that must catch it, its verdict)
BROKEN: dict[str, tuple[dict[str, Any], str | None, dict[str, Any], str, str]] = {
    "unshifted targets": (
        {"module": "text", "source": "tiny.txt"},
        "unshifted",
        {},
        "targets_aligned",
        "fail",
    ),
    "all targets masked": (
        {"module": "text", "source": "tiny.txt"},
        "all_masked",
        {},
        "masked_targets",
        "fail",
    ),
    "ids at or above the vocab size": (
        {"module": "text", "source": "tiny.txt"},
        "ids_past_vocab",
        {},
        "token_ids_in_range",
        "fail",
    ),
    "constant sequence": ({"module": "constant", "source": "constant"}, None, {}, "target_diversity", "fail"),
    "shuffled labels": (
        {"module": "shuffled", "source": "shuffled", "packing": "pairs"},
        None,
        PAIRS_SMALL,
        "accuracy",
        "warn",
    ),
    "tiny dataset duplicated into val": (
        {"module": "dupval", "source": "dupval"},
        None,
        {},
        "split_overlap",
        "fail",
    ),
    "empty strings": ({"module": "empty", "source": "empty"}, None, {}, "empty_examples", "fail"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_data_gets_the_right_check(catalogue: Catalogue, case: str) -> None:
    dataset, corruption, training, name, verdict = BROKEN[case]
    outcome = catalogue.run(dataset, corruption, **training)
    check = outcome.check(name)
    assert check["verdict"] == verdict, check
    assert check["reason"] and check["threshold"]
    expected_overall = "not fit" if verdict == "fail" else "fit with warnings"
    assert outcome.report["verdict"] == expected_overall, outcome.report["summary"]
    if verdict == "fail":  # failing checks come first
        first_ok = next(i for i, c in enumerate(outcome.report["checks"]) if c["verdict"] != "fail")
        assert all(c["verdict"] != "fail" for c in outcome.report["checks"][first_ok:])


def test_batches_that_cannot_train_stop_the_job_with_a_report(catalogue: Catalogue) -> None:
    outcome = catalogue.run({"module": "text", "source": "tiny.txt"}, "ids_past_vocab")
    assert outcome.error and "outside the vocabulary" in outcome.error
    assert outcome.report["stopped_early"] and outcome.report["trace"]["steps"] == 0
    assert outcome.report["checks"][0]["name"] == "token_ids_in_range"


GOOD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sort task": (
        {"module": "sort", "source": "sort", "packing": "pairs", "options": {"num_examples": 2000}},
        PAIRS_SMALL,
    ),
    "a real text file": ({"module": "text", "source": "tiny.txt"}, {}),
    "a generated Anki deck": (
        {"module": "anki", "source": "plurals.apkg", "packing": "pairs"},
        {"block_size": 32, "batch_size": 32, "max_iters": 300},
    ),
}


@pytest.mark.parametrize("case", list(GOOD))
def test_good_data_passes_with_no_fail(catalogue: Catalogue, case: str) -> None:
    dataset, training = GOOD[case]
    outcome = catalogue.run(dataset, **training)
    assert outcome.error is None
    failing = outcome.verdicts("fail")
    assert not failing, [outcome.check(n)["reason"] for n in failing]
    assert outcome.report["verdict"] in ("fit", "fit with warnings")
    for name in (
        "token_ids_in_range",
        "targets_aligned",
        "loss_at_init",
        "one_batch_overfit",
        "loss_falls",
        "trace",
    ):
        assert outcome.check(name)["verdict"] == "pass", outcome.check(name)
    if dataset.get("packing") == "pairs":
        assert outcome.check("accuracy")["verdict"] in ("pass", "warn")
        assert outcome.report["accuracy"]["examples"] > 0
