"""The retrieval checks on retrieval datasets prepared for real: a corpus that holds the facts passes
them all; one without them, a context cut short and a corpus that gives val away are each caught."""

from __future__ import annotations

from pathlib import Path

from data_service.modules import discover
from data_service.store import Store
from simtrain.jobs import ChecksSpec
from tests.retrieval_facts import write_pairs, write_passages
from trainer_service.report.checks import Check, Verdict
from trainer_service.report.recipe_checks import target_leakage
from trainer_service.report.retrieval_checks import retrieval_checks

N = 60


def checks(root: Path, store: Store, **options: str) -> dict[str, Check]:
    write_pairs(root / "qa.jsonl", N)
    write_passages(root / "facts.txt", N)
    (root / "other.txt").write_text(
        "\n\n".join(f"Isle {i} has a harbour with {i % 5 + 2} boats." for i in range(N)) + "\n",
        encoding="utf-8",
    )
    ds = store.prepare(discover()["jsonl"], root, "qa.jsonl", packing="pairs", options=options)
    return {c.name: c for c in retrieval_checks(ds.meta["stats"], ChecksSpec())}


def test_a_corpus_holding_the_facts_passes_every_retrieval_check(root: Path, store: Store) -> None:
    found = checks(root, store, retrieval_corpus="facts.txt", retrieve_k="2", context_tokens="200")
    assert {c.verdict for c in found.values()} == {Verdict.passed}, [c.reason for c in found.values()]
    assert found["retrieval_support"].value == 1.0 and found["retrieval_leak"].value == 0.0


def test_a_corpus_without_the_answers_fails_support_with_advice(root: Path, store: Store) -> None:
    support = checks(root, store, retrieval_corpus="other.txt")["retrieval_support"]
    assert support.verdict is Verdict.fail and support.value == 0.0
    assert "corpus lacks those facts" in support.reason and "retrieve_k" in support.reason
    assert "Who keeps the lighthouse" in support.reason  # an example it could not answer


def test_a_context_cut_short_warns_or_fails(root: Path, store: Store) -> None:
    found = checks(root, store, retrieval_corpus="facts.txt", retrieve_k="3", context_tokens="20")
    cut = found["retrieval_context_cut"]
    assert cut.verdict is Verdict.fail and cut.value > 0.9
    assert "raise context_tokens" in cut.reason
    assert found["retrieval_support"].verdict is Verdict.fail  # the names sit past the cut


def test_a_corpus_made_of_the_val_answers_fails_the_leak_check(root: Path, store: Store) -> None:
    leak = checks(root, store, retrieval_corpus="qa.jsonl", exclude_val_passages="false")["retrieval_leak"]
    assert leak.verdict is Verdict.fail and leak.value == 1.0
    assert "val loss measures copying" in leak.reason and "exclude_val_passages" in leak.reason
    guarded = checks(root, store, retrieval_corpus="qa.jsonl")["retrieval_leak"]
    assert guarded.verdict is Verdict.passed and "passages left out" in guarded.reason


def test_without_retrieval_every_retrieval_check_skips(root: Path, store: Store) -> None:
    found = checks(root, store)
    assert {c.verdict for c in found.values()} == {Verdict.skip}
    assert all("no retrieval corpus" in c.reason for c in found.values())


def test_answers_in_retrieved_context_are_not_called_leakage() -> None:
    """With retrieval the prompt is meant to hold the answer; the retrieval checks judge that instead."""
    copied = {"leaked_share": 0.95}
    assert target_leakage(copied, ChecksSpec(), pairs=True).verdict is Verdict.fail
    skipped = target_leakage(copied, ChecksSpec(), pairs=True, retrieval=True)
    assert skipped.verdict is Verdict.skip and "retrieval_support" in skipped.reason
