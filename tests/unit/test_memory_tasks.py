"""The memory control tasks: recall's pairs, queries and gap, lookup's facts and its own corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.base import Pair, Report
from data_service.store import Store

MODULES = discover()


def read(name: str, **options: str) -> list[Pair]:
    module = MODULES[name]
    given = {o.name: o.default for o in module.options} | options
    return list(module.read(None, given, Report()))


def test_recall_asks_for_values_shown_before_the_distractors() -> None:
    examples = read("recall", num_pairs="4", num_queries="2", gap="5", num_examples="200")
    assert examples == read("recall", num_pairs="4", num_queries="2", gap="5", num_examples="200")
    for ex in examples:
        shown, question = re.fullmatch(r"(.*)\|(.*):", ex.prompt).groups()
        pairs = [(p[0], p[1]) for p in shown.split()]
        keys = [k for k, _ in pairs]
        assert len(pairs) == 9 and len(set(keys)) == 9  # 4 that may be asked about, then 5 distractors
        asked = question.split()
        assert len(asked) == 2 and all(keys.index(k) < 4 for k in asked)
        assert ex.completion == "".join(dict(pairs)[k] for k in asked)
    assert read("recall", seed="1", num_examples="5") != read("recall", num_examples="5")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"num_pairs": "20", "gap": "7"}, "num_pairs (20) + gap (7) must be at most 26"),
        ({"gap": "-1"}, "option gap must be an integer from 0 to 26"),
        ({"num_queries": "5"}, "option num_queries must be an integer from 1 to 4"),
        ({"num_pairs": "x"}, "option num_pairs must be an integer"),
    ],
)
def test_recall_refuses_impossible_options(options: dict[str, str], says: str) -> None:
    with pytest.raises(DataError, match=re.escape(says)):
        read("recall", **options)


def test_lookup_facts_sit_only_in_its_corpus_each_asked_once() -> None:
    module = MODULES["lookup"]
    options = {o.name: o.default for o in module.options} | {"num_facts": "300"}
    examples, corpus = read("lookup", num_facts="300"), list(module.corpus(options))
    assert len(examples) == len(corpus) == 300
    assert len({ex.prompt for ex in examples}) == 300  # one prompt per fact: the split never shares one
    for ex, passage in zip(examples, corpus, strict=True):
        key = re.fullmatch(r"code of (\w+)\? ", ex.prompt).group(1)
        assert passage == f"{key} has the code {ex.completion}." and re.fullmatch(r"\d{4}", ex.completion)
        assert ex.prompt.strip() not in passage  # worded apart, so it is no val-built passage
    with pytest.raises(DataError, match="option num_facts must be an integer from 1 to 4096"):
        read("lookup", num_facts="5000")


def test_lookup_val_answers_are_in_no_train_row_but_in_their_own_context(root: Path, store: Store) -> None:
    options = {"num_facts": "400", "retrieval_corpus": "builtin", "retrieve_k": "1"}
    ds = store.prepare(MODULES["lookup"], root, "lookup", packing="pairs", options=options)
    tok, retrieval = ds.tokenizer(), ds.meta["stats"]["retrieval"]
    assert retrieval["val_passages_excluded"] == 0 and retrieval["val_leaks"] == 0
    assert retrieval["supported"] == retrieval["examples"]  # BM25 finds every fact by its key

    def asked(split: str) -> set[str]:
        """The keys a split's rows ask for (the prompt follows the retrieved passage)."""
        tokens = ds.tokens(split)
        heads = (tok.decode(tokens[s : s + p]) for s, p, _ in ds.rows(split))
        return {re.search(r"code of (\w+)\? $", head).group(1) for head in heads}

    val = asked("val")
    assert val and not val & asked("train")  # so without retrieval a val answer is a guess
    plain = store.prepare(MODULES["lookup"], root, "lookup", packing="pairs", options={"num_facts": "400"})
    assert plain.id != ds.id and "retrieval" not in plain.meta["stats"]
