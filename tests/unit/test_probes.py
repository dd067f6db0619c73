"""Probes: greedy answers at each evaluation, scored exact, by prefix and by token, both ways."""

from __future__ import annotations

import pytest
import torch

from data_service.errors import DataError
from data_service.tokenizers.char import CharTokenizer
from simtrain.jobs import JobSpec, ProbeSpec
from trainer_service.model import GPT, GPTConfig
from trainer_service.probes import Codec, Context, Probes, score, shown

TOK = CharTokenizer.train(["abcxyz "], specials=["<|endoftext|>"])
END = TOK.special_id("<|endoftext|>")


def codec() -> Codec:
    return Codec(lambda t: TOK.encode(t).tolist(), TOK.decode, frozenset({END}))


def saying(*ids: int) -> GPT:
    """A model whose greedy answer is ``ids`` in turn, then the last of them over and over: the logit of
    the next id depends only on the position (the hidden state is the layer norm of a one-hot position
    embedding, twice as wide as the positions, so that a row summing many positions stays positive)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=64, vocab_size=TOK.vocab_size, block_size=32))
    with torch.no_grad():
        for p in model.transformer.h.parameters():
            p.zero_()
        model.transformer.wte.weight.zero_()
        model.transformer.wpe.weight.copy_(torch.eye(32, 64))
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.ln_f.bias.zero_()
        model.lm_head.weight.zero_()
        for position in range(32):
            # The prompt is 3 tokens: the answer's k-th token comes from position 2 + k.
            k = min(max(position - 2, 0), len(ids) - 1)
            model.lm_head.weight[ids[k], position] = 10.0
    return model


def ids(text: str) -> list[int]:
    return TOK.encode(text).tolist()


def test_scores_tell_right_from_wrong():
    assert score(ids("abc"), "abc", ids("abc"), "abc") == {
        "exact": True,
        "prefix": True,
        "token_accuracy": 1.0,
    }
    assert score(ids("abcx"), "abcx", ids("abc"), "abc") == {
        "exact": False,
        "prefix": True,
        "token_accuracy": 1.0,
    }
    assert score(ids("abz"), "abz", ids("abc"), "abc") == {
        "exact": False,
        "prefix": False,
        "token_accuracy": pytest.approx(2 / 3),
    }
    assert score(ids("zz"), "zz", ids("abc"), "abc")["token_accuracy"] == 0.0


def test_a_right_answer_scores_and_stops_at_the_end_token():
    model = saying(*ids("xyz"), END)
    probes = Probes(
        [ProbeSpec(prompt="abc", expected="xyz"), ProbeSpec(prompt="abc", expected="xyy")], codec()
    )
    rows = probes.answer(model, step=10)
    assert rows[0] == {"step": 10, "text": "xyz", "exact": True, "prefix": True, "token_accuracy": 1.0}
    assert rows[1]["text"] == "xyz" and not rows[1]["exact"] and not rows[1]["prefix"]
    assert rows[1]["token_accuracy"] == pytest.approx(2 / 3)
    assert probes.summary_line(10) == "probes at step 10: 1/2 exact, 1/2 by prefix"
    report = probes.report()
    assert report["steps"] == [10]
    assert report["final"] == {"scored": 2, "exact": 1, "prefix": 1, "token_accuracy": pytest.approx(5 / 6)}
    assert model.training  # handed back as it came


def test_an_answer_without_an_expected_one_is_kept_unscored_and_sized_by_default():
    probes = Probes([ProbeSpec(prompt="abc"), ProbeSpec(prompt="abc", max_new_tokens=5)], codec())
    first, second = probes.answer(saying(*ids("x")), step=0)
    assert first == {"step": 0, "text": "x" * 32} and second == {"step": 0, "text": "x" * 5}
    assert probes.summary_line(0) is None and probes.report()["final"] is None


def test_answers_are_kept_by_step_and_a_step_again_replaces_its_answer():
    probes = Probes([ProbeSpec(prompt="abc", expected="x")], codec())
    probes.answer(saying(*ids("y"), END), step=0)
    probes.answer(saying(*ids("x"), END), step=5)
    saved = probes.state_dict()
    resumed = Probes([ProbeSpec(prompt="abc", expected="x")], codec())
    resumed.load_state_dict(saved)
    resumed.answer(saying(*ids("x"), END), step=5)  # a resumed job evaluates step 5 again
    resumed.answer(saying(*ids("x"), END), step=10)
    [item] = resumed.report()["items"]
    assert [(r["step"], r["text"], r["exact"]) for r in item["answers"]] == [
        (0, "y", False),
        (5, "x", True),
        (10, "x", True),
    ]


def test_a_retrieved_context_goes_before_its_prompt_and_is_shown_with_it():
    probes = Probes([ProbeSpec(prompt="abc", expected="xyz")], codec(), [Context(ids("ab"), "ab")])
    [row] = probes.answer(saying(*ids("xyz"), END), step=0)
    assert row["text"] == "z"  # answered two positions further on: the context took the first two
    report = probes.report()
    assert report["items"][0]["context"] == "ab" and "note" not in report


def test_probes_asked_without_the_context_their_rows_have_say_why():
    note = "asked without the retrieved context the dataset's rows have: the data service does not offer it"
    probes = Probes([ProbeSpec(prompt="abc", expected="xyz")], codec(), note=note)
    [row] = probes.answer(saying(*ids("xyz"), END), step=0)
    assert row["exact"]
    report = probes.report()
    assert report["note"] == note and "context" not in report["items"][0]


def test_a_prompt_the_tokenizer_cannot_encode_is_an_error_of_that_probe_only():
    probes = Probes([ProbeSpec(prompt="Q?"), ProbeSpec(prompt="abc", expected="x")], codec())
    rows = probes.answer(saying(*ids("x"), END), step=0)
    assert len(rows) == 1 and rows[0]["exact"]
    bad, good = probes.report()["items"]
    assert bad["answers"] == [] and "cannot encode this probe" in bad["error"] and "'Q'" in bad["error"]
    assert "error" not in good


def test_an_answer_the_codec_cannot_decode_is_lost_not_the_job():
    def refuse(ids: list[int]) -> str:
        raise DataError("the data service is gone")

    probes = Probes([ProbeSpec(prompt="abc")], Codec(codec().encode, refuse))
    assert probes.answer(saying(*ids("x")), step=3) == []
    [row] = probes.report()["items"][0]["answers"]
    assert row["step"] == 3 and "the data service is gone" in row["error"]


@pytest.mark.parametrize(
    ("probes", "field"),
    [
        ([{"prompt": ""}], "probes.0.prompt"),
        ([{"prompt": "x" * 501}], "probes.0.prompt"),
        ([{"prompt": "hi", "expected": ""}], "probes.0.expected"),
        ([{"prompt": "hi", "max_new_tokens": 0}], "probes.0.max_new_tokens"),
        ([{"prompt": "hi", "max_new_tokens": 257}], "probes.0.max_new_tokens"),
        ([{"prompt": "hi", "answer": "x"}], "probes.0.answer"),
        ([{"prompt": "hi"}] * 17, "probes"),
    ],
)
def test_the_spec_limits_probes_naming_the_field(probes: list, field: str):
    with pytest.raises(ValueError) as info:
        JobSpec.model_validate({"dataset": {"module": "text", "source": "a.txt"}, "probes": probes})
    [error] = info.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == field


def test_tables_show_a_few_steps_first_and_last_among_them():
    assert shown([0, 6, 12]) == [0, 6, 12]
    assert shown(list(range(0, 1001, 100))) == [0, 200, 400, 600, 800, 1000]
    assert shown(list(range(7))) == [0, 1, 2, 4, 5, 6]
