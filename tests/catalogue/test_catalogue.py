"""The catalogue of broken data: each broken dataset gets the check that names its fault; good data passes.

Broken modules come from the catalogue plugin (entry points); broken batches and a service that gets the
split wrong come from a misbehaving data service. Every job trains a tiny model for a few hundred steps with
the default thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.catalogue.conftest import LICENCES, SYSTEM_LICENCES, Catalogue

PAIRS_SMALL = {"block_size": 16, "batch_size": 32, "max_iters": 300}
PAIRS_CUT = {"block_size": 32, "batch_size": 16, "max_iters": 200}
SORT = {"module": "sort", "source": "sort", "packing": "pairs", "options": {"num_examples": 2000}}
TINY = {"module": "text", "source": "tiny.txt"}


@dataclass(frozen=True)
class Broken:
    dataset: dict[str, Any]
    check: str  # the check that must name the fault
    verdict: str  # ... and its verdict
    says: str = ""  # words its reason must contain
    corruption: str | None = None  # batches from the misbehaving service
    training: dict[str, Any] = field(default_factory=dict)
    others: dict[str, str] = field(default_factory=dict)  # other checks' verdicts: no misdiagnosis


BROKEN: dict[str, Broken] = {
    "unshifted targets": Broken(TINY, "targets_aligned", "fail", "not shifted", corruption="unshifted"),
    "all targets masked": Broken(TINY, "masked_targets", "fail", "masked", corruption="all_masked"),
    "ids at or above the vocab size": Broken(
        TINY, "token_ids_in_range", "fail", "outside the vocabulary", corruption="ids_past_vocab"
    ),
    "constant sequence": Broken({"module": "constant", "source": "constant"}, "target_diversity", "fail"),
    "shuffled labels": Broken(
        {"module": "shuffled", "source": "shuffled", "packing": "pairs"},
        "accuracy",
        "warn",
        training=PAIRS_SMALL,
    ),
    "tiny dataset duplicated into val": Broken(
        {"module": "dupval", "source": "dupval"}, "split_overlap", "fail"
    ),
    "empty strings": Broken({"module": "empty", "source": "empty"}, "empty_examples", "fail"),
    "random bytes read as Latin-1": Broken(
        {"module": "noise", "source": "noise"}, "baseline", "fail", "unigram"
    ),
    "every answer is the same": Broken(
        {"module": "yes", "source": "yes", "packing": "pairs"},
        "answer_diversity",
        "fail",
        "'yes'",
        training={**PAIRS_CUT, "block_size": 64},
    ),
    "padding left in the targets": Broken(
        SORT,
        "padding_in_targets",
        "fail",
        "mask",
        corruption="padding_in_targets",
        training=PAIRS_SMALL,
        others={"truncation": "pass"},
    ),
    "answers cut off by the block": Broken(
        {"module": "longanswers", "source": "longanswers", "packing": "pairs"},
        "truncation",
        "fail",
        "block_size",
        training=PAIRS_CUT,
    ),
    "prompts that fill the block": Broken(
        {"module": "longprompts", "source": "longprompts", "packing": "pairs"},
        "truncation",
        "fail",
        "prompt",
        training=PAIRS_CUT,
        others={"finite": "pass", "padding": "pass"},
    ),
    "text too small for one block": Broken(
        {"module": "tinytext", "source": "tinytext"}, "batches_served", "fail", "block_size"
    ),
    "every example the same": Broken(
        {"module": "allsame", "source": "allsame"}, "batches_served", "fail", "distinct"
    ),
    "train served as val, no statistics": Broken(
        SORT,
        "split_overlap",
        "fail",
        "copied",
        corruption="train_as_val",
        training={**PAIRS_SMALL, "max_iters": 30, "eval_interval": 30, "eval_iters": 1},
    ),
    "a BPE vocabulary too big for the data": Broken(  # 4,096 entries learned from about 46k train tokens
        {"module": "text", "source": LICENCES, "tokenizer": "bpe"},
        "vocab_size",
        "warn",
        "vocab_size to about",
    ),
    "Anki fields mixing text and images": Broken(
        {"module": "anki", "source": "pictures.apkg", "packing": "pairs"},
        "media",
        "warn",
        "dropped",
        training={"block_size": 32, "batch_size": 32, "max_iters": 100},
    ),
}


def skip_without_licences(dataset: dict[str, Any]) -> None:
    if dataset.get("source") == LICENCES and not SYSTEM_LICENCES.is_dir():
        pytest.skip(f"no licence texts at {SYSTEM_LICENCES} on this machine")


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_data_gets_the_right_check(catalogue: Catalogue, case: str) -> None:
    broken = BROKEN[case]
    skip_without_licences(broken.dataset)
    outcome = catalogue.run(broken.dataset, broken.corruption, **broken.training)
    check = outcome.check(broken.check)
    assert check["verdict"] == broken.verdict, f"{check['verdict']}: {check['reason']}"
    assert broken.says in check["reason"], check["reason"]
    assert check["reason"] and check["threshold"]
    for name, verdict in broken.others.items():
        assert outcome.check(name)["verdict"] == verdict, outcome.check(name)
    expected_overall = "not fit" if broken.verdict == "fail" else "fit with warnings"
    assert outcome.report["verdict"] == expected_overall, outcome.report["summary"]
    if broken.verdict == "fail":  # failing checks come first
        first_ok = next(i for i, c in enumerate(outcome.report["checks"]) if c["verdict"] != "fail")
        assert all(c["verdict"] != "fail" for c in outcome.report["checks"][first_ok:])


def test_batches_that_cannot_train_stop_the_job_with_a_report(catalogue: Catalogue) -> None:
    outcome = catalogue.run(TINY, "ids_past_vocab")
    assert outcome.error and "outside the vocabulary" in outcome.error
    assert outcome.report["stopped_early"] and outcome.report["trace"]["steps"] == 0
    assert outcome.report["checks"][0]["name"] == "token_ids_in_range"


GOOD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sort task": (SORT, PAIRS_SMALL),
    "a real text file": (TINY, {}),
    "a generated Anki deck": (
        {"module": "anki", "source": "plurals.apkg", "packing": "pairs"},
        {"block_size": 32, "batch_size": 32, "max_iters": 300},
    ),
    "a mixed real text": ({"module": "text", "source": LICENCES}, {}),
}
# Checks that must neither fail nor warn on good data.
CLEAN = (
    "token_ids_in_range",
    "targets_aligned",
    "loss_at_init",
    "one_batch_overfit",
    "loss_falls",
    "trace",
    "baseline",
    "answer_diversity",
    "padding_in_targets",
    "truncation",
    "empty_examples",
    "vocab_size",
    "media",
    "batches_served",
)


@pytest.mark.parametrize("case", list(GOOD))
def test_good_data_passes_with_no_fail(catalogue: Catalogue, case: str) -> None:
    dataset, training = GOOD[case]
    skip_without_licences(dataset)
    outcome = catalogue.run(dataset, **training)
    assert outcome.error is None
    failing = outcome.verdicts("fail")
    assert not failing, [outcome.check(n)["reason"] for n in failing]
    assert outcome.report["verdict"] in ("fit", "fit with warnings")
    for name in CLEAN:
        assert outcome.check(name)["verdict"] in ("pass", "skip"), outcome.check(name)
    for name in ("token_ids_in_range", "targets_aligned", "loss_at_init", "one_batch_overfit", "baseline"):
        assert outcome.check(name)["verdict"] == "pass", outcome.check(name)
    if dataset.get("packing") == "pairs":
        assert outcome.check("accuracy")["verdict"] in ("pass", "warn")
        assert outcome.report["accuracy"]["examples"] > 0
