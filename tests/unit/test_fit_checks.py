"""The checks' verdicts and reasons, from measurements made up to sit on each side of the thresholds."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from simtrain.jobs import ChecksSpec, JobSpec
from trainer_service.report import build, data_checks, recipe_checks
from trainer_service.report.checks import Check, Verdict, grade, ordered, overall
from trainer_service.report.recipe_checks import RunFacts, expected_calls, trace_check

SPEC = ChecksSpec()
STATS = {
    "num_examples": {"train": 900, "val": 100},
    "empty_examples": 0,
    "duplicate_examples": 3,
    "train_val_overlap": 0,
    "val_tokens_unseen_in_train": 0,
    "num_tokens": {"train": 40_000, "val": 4_000},
    "module": {},
}
BATCHES = {
    "batches": 10,
    "out_of_range": 0,
    "first_problem": None,
    "masked_share": 0.3,
    "padded_share": 0.2,
    "aligned_share": 1.0,
    "same_position_share": 0.05,
    "leaked_share": 0.0,
    "truncated_share": 0.0,
    "untrained_row_share": 0.0,
    "pad_row_share": 0.0,
    "pad_token": 0,
    "top_target": 3,
    "top_target_share": 0.2,
    "distinct_targets": 40,
    "target_entropy_bits": 4.5,
}
FACTS = RunFacts(
    vocab_size=65,
    pairs=True,
    init_val_loss=math.log(65),
    init_train_loss=4.17,
    final_train_loss=1.2,
    final_val_loss=1.3,
    train_unigram_nats=3.0,
    recent_fall=0.01,
    nonfinite_steps=0,
    first_nonfinite_step=None,
    data_wait_share=0.01,
    preflight={"rows": 8, "steps": 50, "ratio": 0.5, "initial_loss": 4.2, "final_loss": 0.4},
    accuracy={"examples": 100, "correct": 40, "accuracy": 0.4},
)
ANSWERS = {
    "examples": 500,
    "distinct_answers": 120,
    "answers_per_example": 0.24,
    "top_answer_ids": [5, 6, 0],
    "top_answer_share": 0.05,
    "answer_entropy_bits": 6.3,
    "answer_entropy_given_prompt_bits": 0.0,
}


def test_an_empty_checks_object_is_valid_and_every_threshold_has_a_default() -> None:
    spec = JobSpec.model_validate({"dataset": {"module": "text", "source": "x"}, "checks": {}})
    assert spec.checks == ChecksSpec()
    assert spec.checks.overfit_steps == 50 and spec.checks.aligned_min == 0.99
    custom = JobSpec.model_validate(
        {"dataset": {"module": "text", "source": "x"}, "checks": {"gap_warn": 1.5}}
    )
    assert custom.checks.gap_warn == 1.5


@pytest.mark.parametrize(
    "checks",
    [{"gap_warm": 1.0}, {"empty_warn": 0.5, "empty_fail": 0.1}, {"accuracy_warn": 0.1, "accuracy_fail": 0.5}],
)
def test_bad_thresholds_are_refused(checks: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate({"dataset": {"module": "text", "source": "x"}, "checks": checks})


def test_grade_and_overall_verdict() -> None:
    assert grade(0.05, 0.1, 0.2) is Verdict.passed
    assert grade(0.15, 0.1, 0.2) is Verdict.warn
    assert grade(0.25, 0.1, 0.2) is Verdict.fail
    assert grade(0.05, 0.1, None, higher_is_worse=False) is Verdict.warn
    checks = [
        Check("a", "data", "a", Verdict.passed, "fine"),
        Check("b", "data", "b", Verdict.skip, "n/a"),
        Check("c", "recipe", "c", Verdict.warn, "hm"),
        Check("d", "recipe", "dee", Verdict.fail, "broken"),
    ]
    assert [c.name for c in ordered(checks)] == ["d", "c", "a", "b"]
    result = overall(checks)
    assert result["verdict"] == "not fit" and result["failing"] == ["d"] and result["warnings"] == ["c"]
    assert result["summary"] == "dee fails: broken"
    second = Check("e", "data", "eee", Verdict.fail, "also broken")
    assert overall([*checks, second])["summary"] == "dee fails (2 checks fail; this is the first): broken"
    assert overall(checks[:3])["verdict"] == "fit with warnings"
    assert overall(checks[:2])["verdict"] == "fit"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def decode(ids: list[int]) -> str:
    return "".join(chr(ord("a") + i % 26) for i in ids)


def data(
    stats: dict[str, Any] = STATS,
    batches: dict[str, Any] = BATCHES,
    overlap: Any = None,
    answers: dict[str, Any] | None = ANSWERS,
    *,
    vocab: int = 65,
    tokenizer: str = "char",
    refused: str | None = None,
) -> dict[str, Check]:
    overlap = overlap or {"ratio": 0.5, "unit": "32-gram", "val_hits": 0.3, "fresh_hits": 0.6}
    found = data_checks.data_checks(
        stats,
        batches,
        overlap,
        answers,
        SPEC,
        vocab=vocab,
        tokenizer=tokenizer,
        block_size=64,
        pairs=True,
        refused=refused,
        decode=decode,
    )
    return by_name(found)


def test_healthy_data_passes() -> None:
    checks = data()
    assert {c.verdict for c in checks.values()} == {Verdict.passed}
    assert all(c.reason for c in checks.values())


@pytest.mark.parametrize(
    ("change", "name", "verdict"),
    [
        ({"empty_examples": 5}, "empty_examples", Verdict.passed),
        ({"empty_examples": 50}, "empty_examples", Verdict.warn),
        ({"empty_examples": 500}, "empty_examples", Verdict.fail),
        ({"duplicate_examples": 600}, "duplicates", Verdict.warn),
        ({"train_val_overlap": 4}, "split_overlap", Verdict.fail),
        ({"val_tokens_unseen_in_train": 2}, "unseen_val_tokens", Verdict.warn),
        ({"module": {"media_only_fields": 3}}, "media", Verdict.warn),
        ({"module": {"media_dropped_fields": 2}}, "media", Verdict.warn),
    ],
)
def test_statistics_checks(change: dict[str, Any], name: str, verdict: Verdict) -> None:
    check = data(STATS | change)[name]
    assert check.verdict is verdict, check.reason


def test_missing_statistics_skip_their_checks() -> None:
    checks = data({})
    for name in ("empty_examples", "duplicates", "unseen_val_tokens", "vocab_size"):
        assert checks[name].verdict is Verdict.skip


@pytest.mark.parametrize(
    ("change", "name", "verdict"),
    [
        (
            {"out_of_range": 3, "first_problem": "train batch 4 has 3 token ids outside"},
            "token_ids_in_range",
            "fail",
        ),
        ({"masked_share": 1.0}, "masked_targets", Verdict.fail),
        ({"padded_share": 0.9}, "padding", Verdict.warn),
        ({"truncated_share": 0.3}, "truncation", Verdict.warn),
        ({"truncated_share": 0.88}, "truncation", Verdict.fail),
        ({"pad_row_share": 0.005}, "padding_in_targets", Verdict.passed),
        ({"pad_row_share": 0.05}, "padding_in_targets", Verdict.warn),
        ({"pad_row_share": 1.0}, "padding_in_targets", Verdict.fail),
        ({"top_target_share": 0.7}, "target_diversity", Verdict.warn),
        ({"top_target_share": 0.99}, "target_diversity", Verdict.fail),
    ],
)
def test_batch_checks(change: dict[str, Any], name: str, verdict: str) -> None:
    assert data(batches=BATCHES | change)[name].verdict == verdict


def test_overlap_ratio_thresholds() -> None:
    def overlap(ratio: float | None) -> Check:
        return data(overlap={"ratio": ratio, "unit": "32-gram", "val_hits": ratio, "fresh_hits": 1.0})[
            "split_overlap"
        ]

    assert overlap(0.5).verdict is Verdict.passed
    assert overlap(0.8).verdict is Verdict.warn
    assert overlap(0.97).verdict is Verdict.fail and "copied from train" in overlap(0.97).reason
    assert overlap(None).verdict is Verdict.skip


def test_padding_left_in_targets_is_named_with_its_token_and_the_fix() -> None:
    check = data(batches=BATCHES | {"pad_row_share": 0.9, "pad_token": 2})["padding_in_targets"]
    assert check.verdict is Verdict.fail
    assert "token 2 ('c') repeated to the end of the block" in check.reason and "mask padding" in check.reason


def test_truncation_names_rows_with_no_trained_answer() -> None:
    check = data(batches=BATCHES | {"truncated_share": 0.9, "untrained_row_share": 0.6})["truncation"]
    assert check.verdict is Verdict.fail
    assert "the prompt alone fills the block" in check.reason and "cut off" in check.reason


def test_answers_that_are_all_alike_fail_and_say_which() -> None:
    yes = ANSWERS | {"distinct_answers": 1, "top_answer_share": 1.0, "answer_entropy_bits": 0.0}
    check = data(answers=yes)["answer_diversity"]
    assert (
        check.verdict is Verdict.fail
        and "'fg'" in check.reason
        and "without reading the prompt" in check.reason
    )
    assert data(answers=ANSWERS | {"top_answer_share": 0.7})["answer_diversity"].verdict is Verdict.warn
    assert data(answers=None)["answer_diversity"].verdict is Verdict.skip
    assert data(answers={"examples": 0})["answer_diversity"].verdict is Verdict.skip


def test_a_vocabulary_too_large_for_the_data_warns_with_a_size_to_use() -> None:
    bpe = data(STATS | {"num_tokens": {"train": 38_000}}, vocab=4096, tokenizer="bpe")["vocab_size"]
    assert bpe.verdict is Verdict.warn and "vocab_size to about 1024" in bpe.reason
    big = data(STATS | {"num_tokens": {"train": 500_000}}, vocab=50_000, tokenizer="bpe")["vocab_size"]
    assert big.verdict is Verdict.warn and "vocab_size to about 16384" in big.reason
    small = data(STATS | {"num_tokens": {"train": 6_000}}, vocab=1000, tokenizer="bpe")["vocab_size"]
    assert "vocab_size to about 512, or use the byte tokenizer" in small.reason
    char = data(STATS | {"num_tokens": {"train": 600}}, vocab=65)["vocab_size"]
    assert char.verdict is Verdict.warn and "add data" in char.reason


def test_a_refused_stream_fails_with_the_services_words() -> None:
    check = data(refused="the val split is empty: every example is a duplicate")["batches_served"]
    assert check.verdict is Verdict.fail and "every example is a duplicate" in check.reason


def test_a_refused_dataset_still_gets_a_not_fit_report_that_says_what_to_change() -> None:
    why = "the data holds 40 tokens, fewer than one block of 65: use block_size below 39 or add data"
    report = build.refused_report("job-1", {"module": "text", "source": "tiny.txt"}, why)
    assert report["verdict"] == "not fit" and report["failing"] == ["batches_served"]
    assert why in report["summary"] and report["checks"][0]["reason"] == why


def recipe(facts: RunFacts = FACTS, batches: dict[str, Any] = BATCHES) -> dict[str, Check]:
    return by_name(recipe_checks.recipe_checks(facts, batches, SPEC))


def test_a_healthy_run_passes_every_recipe_check() -> None:
    checks = recipe()
    assert {c.verdict for c in checks.values()} == {Verdict.passed}, [c.reason for c in checks.values()]


@pytest.mark.parametrize(
    ("change", "name", "verdict"),
    [
        ({"init_val_loss": 4.7}, "loss_at_init", Verdict.warn),
        ({"init_val_loss": 6.0}, "loss_at_init", Verdict.fail),
        ({"init_val_loss": math.nan}, "loss_at_init", Verdict.fail),
        ({"init_val_loss": None}, "loss_at_init", Verdict.skip),
        ({"final_train_loss": 4.0}, "loss_falls", Verdict.warn),
        ({"final_train_loss": 4.5}, "loss_falls", Verdict.fail),
        ({"final_train_loss": math.nan}, "loss_falls", Verdict.fail),
        ({"nonfinite_steps": 3, "first_nonfinite_step": 12}, "finite", Verdict.fail),
        ({"init_val_loss": None, "final_train_loss": None, "final_val_loss": None}, "finite", Verdict.skip),
        ({"final_val_loss": 2.0}, "val_train_gap", Verdict.warn),
        ({"data_wait_share": 0.2}, "data_wait", Verdict.warn),
        ({"data_wait_share": 0.7}, "data_wait", Verdict.fail),
        ({"preflight": None}, "one_batch_overfit", Verdict.skip),
        ({"accuracy": {"examples": 100, "correct": 1, "accuracy": 0.01}}, "accuracy", Verdict.warn),
        ({"accuracy": None}, "accuracy", Verdict.skip),
        ({"pairs": False}, "accuracy", Verdict.skip),
    ],
)
def test_recipe_checks(change: dict[str, Any], name: str, verdict: Verdict) -> None:
    check = recipe(replace(FACTS, **change))[name]
    assert check.verdict is verdict, check.reason


@pytest.mark.parametrize(
    ("val", "recent_fall", "verdict"),
    [
        (1.3, 0.01, Verdict.passed),
        (2.8, 0.01, Verdict.warn),
        (2.99, 0.01, Verdict.fail),
        (2.99, 0.2, Verdict.warn),
    ],
)
def test_the_model_must_beat_the_unigram_baseline(val: float, recent_fall: float, verdict: Verdict) -> None:
    check = recipe(replace(FACTS, final_val_loss=val, recent_fall=recent_fall))["baseline"]
    assert check.verdict is verdict, check.reason
    assert "nats" in check.reason and "below the unigram entropy" in check.reason and "ln(65)" in check.reason
    if verdict is not Verdict.passed:
        assert ("train longer" in check.reason) == (recent_fall == 0.2)


def test_noise_that_ends_at_ln_vocab_fails_the_baseline() -> None:
    noise = replace(FACTS, vocab_size=256, train_unigram_nats=5.545, final_val_loss=5.536, recent_fall=0.0)
    check = recipe(noise)["baseline"]
    assert check.verdict is Verdict.fail and "the data may be noise" in check.reason
    assert "0.009 nats (0.2%) below the unigram" in check.reason and "-" not in check.reason
    worse = recipe(replace(noise, final_val_loss=5.570))["baseline"]
    assert "0.025 nats (0.5%) above the unigram entropy" in worse.reason
    assert recipe(replace(FACTS, train_unigram_nats=None))["baseline"].verdict is Verdict.skip
    assert recipe(replace(FACTS, final_val_loss=math.nan))["baseline"].verdict is Verdict.skip


def test_a_preflight_that_cannot_memorise_fails() -> None:
    stuck = FACTS.preflight | {"final_loss": 3.9}
    check = recipe(replace(FACTS, preflight=stuck))["one_batch_overfit"]
    assert check.verdict is Verdict.fail and "cannot even memorise one batch" in check.reason
    masked = recipe(replace(FACTS, preflight=FACTS.preflight | {"initial_loss": 0.0, "final_loss": 0.0}))
    assert (
        masked["one_batch_overfit"].verdict is Verdict.fail
        and "every target is masked" in masked["one_batch_overfit"].reason
    )
    nan = FACTS.preflight | {"initial_loss": math.nan, "final_loss": math.nan}
    assert recipe(replace(FACTS, preflight=nan))["one_batch_overfit"].verdict is Verdict.fail


def test_accuracy_can_be_made_to_fail() -> None:
    strict = ChecksSpec(accuracy_warn=0.9, accuracy_fail=0.5)
    check = recipe_checks.accuracy(FACTS, strict)
    assert check.verdict is Verdict.fail and check.setting.startswith("checks.accuracy_warn")


def test_misaligned_targets_say_whether_they_are_unshifted() -> None:
    unshifted = recipe(batches=BATCHES | {"aligned_share": 0.04, "same_position_share": 1.0})[
        "targets_aligned"
    ]
    assert unshifted.verdict is Verdict.fail and "not shifted" in unshifted.reason
    scrambled = recipe(batches=BATCHES | {"aligned_share": 0.5, "same_position_share": 0.05})[
        "targets_aligned"
    ]
    assert scrambled.verdict is Verdict.fail and "fix the packing" in scrambled.reason


def test_answers_inside_prompts_are_leakage_in_pairs_only() -> None:
    assert recipe(batches=BATCHES | {"leaked_share": 0.3})["target_leakage"].verdict is Verdict.warn
    assert recipe(batches=BATCHES | {"leaked_share": 0.8})["target_leakage"].verdict is Verdict.fail
    streamed = recipe(replace(FACTS, pairs=False), BATCHES | {"leaked_share": 0.8})["target_leakage"]
    assert streamed.verdict is Verdict.skip


def test_the_trace_check_names_missing_and_wrong_counts() -> None:
    expected = expected_calls(steps=300, max_iters=300, eval_interval=100, evaluated_at_init=True)
    assert expected["optimizer_step"] == "== 300" and expected["eval"] == "== 4"
    good = {name: {"calls": 300} for name in ("batch_fetch", "lr_schedule", "forward", "loss", "backward")}
    good |= {"grad_clip": {"calls": 300}, "optimizer_step": {"calls": 300}, "encode": {"calls": 1}}
    good |= {"eval": {"calls": 4}, "generate": {"calls": 1}, "checkpoint": {"calls": 3}}
    assert trace_check(good, expected).verdict is Verdict.passed
    broken = good | {"optimizer_step": {"calls": 0}, "eval": {"calls": 1}}
    check = trace_check(broken, expected)
    assert check.verdict is Verdict.fail and check.value == 2
    assert "optimizer_step ran 0 times, expected 300" in check.reason and "eval ran 1 times" in check.reason


def test_reports_hold_no_nan() -> None:
    safe = build.json_safe({"a": math.nan, "b": [1.0, math.inf, (2, -math.inf)], "c": {"d": 0.5}})
    assert safe == {"a": None, "b": [1.0, None, [2, None]], "c": {"d": 0.5}}
