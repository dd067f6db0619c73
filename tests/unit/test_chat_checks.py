"""The chat checks, on chat datasets prepared for real and the batches the data service would serve.

Clean conversations pass every check; a module that masks the wrong tokens, conversations out of order
and chats pre-rendered as plain text are each caught, with what to change. Non-chat data skips.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from data_service.chat_template import ASSISTANT, END_OF_TEXT, END_OF_TURN, USER
from data_service.modules import discover
from data_service.modules.base import Chat, DataModule, Report, Segment
from data_service.modules.chat import ChatModule
from data_service.sampling import EpochOrder, get_batch, pair_batch
from data_service.store import Dataset, Store
from simtrain.jobs import ChecksSpec
from trainer_service.report.chat_checks import chat_checks
from trainer_service.report.chat_turns import ChatTurns, Markers, single_tokens
from trainer_service.report.checks import Verdict

SPEC = ChecksSpec()
NAMES = (
    "chat_replies_trained",
    "chat_end_of_turn",
    "chat_prompts_untrained",
    "chat_role_order",
    "chat_markers",
)
WORDS = "river stone lamp cloud seed bread window garden letter bridge candle field".split()


def conversation(rng: random.Random) -> list[dict[str, str]]:
    """A made-up exchange: a question about a few words, answered by repeating them in order."""
    asked = rng.sample(WORDS, 3)
    turns = [{"role": "system", "content": "Answer in the words asked for."}] if rng.random() < 0.5 else []
    turns.append({"role": "user", "content": f"say {' and '.join(asked)}"})
    turns.append({"role": "assistant", "content": " ".join(asked) + "."})
    if rng.random() < 0.5:
        turns.append({"role": "user", "content": "again, backwards"})
        turns.append({"role": "assistant", "content": " ".join(reversed(asked)) + "."})
    return turns


def write_chats(root: Path, chats: list[list[dict[str, str]]], name: str = "chats.jsonl") -> str:
    (root / name).write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats), encoding="utf-8")
    return name


def clean_chats(n: int = 200) -> list[list[dict[str, str]]]:
    rng = random.Random(7)
    return [conversation(rng) for _ in range(n)]


def batches(ds: Dataset, steps: int = 20, block: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Train batches exactly as the data service serves them."""
    tokens, mask = ds.tokens("train"), ds.mask("train")
    for step in range(steps):
        if ds.packing == "pairs":
            order = EpochOrder(len(ds.rows("train")), 0, "train")
            x, y = pair_batch(
                tokens, ds.rows("train"), order, block_size=block, batch_size=8, step=step,
                pad=ds.meta["end_token"], mask=mask,
            )  # fmt: skip
        else:
            x, y = get_batch(
                tokens, block_size=block, batch_size=8, seed=0, split="train", step=step, mask=mask
            )
        yield torch.from_numpy(np.asarray(x, dtype=np.int64)), torch.from_numpy(np.asarray(y, dtype=np.int64))


def judged(ds: Dataset, **checks: float) -> dict[str, object]:
    tok = ds.tokenizer()
    turns = ChatTurns(single_tokens(lambda text: tok.encode(text).tolist()))
    for x, y in batches(ds):
        turns.add(x, y)
    spec = ChecksSpec(**checks)
    found = chat_checks(turns.summary(), ds.meta["stats"]["module"], turns.sample, spec, tok.decode)
    assert [c.name for c in found] == list(NAMES)
    return {c.name: c for c in found}


def verdicts(result: dict[str, object]) -> dict[str, Verdict]:
    return {name: check.verdict for name, check in result.items()}


@pytest.mark.parametrize("packing", ["stream", "pairs"])
def test_clean_chats_pass_every_chat_check(root: Path, store: Store, packing: str) -> None:
    source = write_chats(root, clean_chats())
    ds = store.prepare(ChatModule(), root, source, "char", packing)
    result = judged(ds)
    assert verdicts(result) == dict.fromkeys(NAMES, Verdict.passed), [c.reason for c in result.values()]
    assert result["chat_end_of_turn"].value == 1.0 and result["chat_prompts_untrained"].value == 0.0


def test_train_on_all_is_a_choice_the_prompt_check_leaves_alone(root: Path, store: Store) -> None:
    source = write_chats(root, clean_chats())
    ds = store.prepare(ChatModule(), root, source, "byte", "stream", {"train_on": "all"})
    result = judged(ds)
    assert result["chat_prompts_untrained"].verdict is Verdict.skip
    assert "train_on is 'all'" in result["chat_prompts_untrained"].reason
    assert result["chat_replies_trained"].verdict is Verdict.passed


class MisMaskedChats(DataModule):
    """A third-party chat module with the classic masking bugs: the reply's <|end|> takes no loss, and
    the user's question does."""

    name = "mismasked"
    description = "chats masked wrongly, on purpose"
    needs_source = False

    def special_tokens(self, path: Path | None, options: Mapping[str, str]) -> tuple[str, ...]:
        return ChatModule().special_tokens(path, options)

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Chat]:
        for i in range(200):
            word = WORDS[i % len(WORDS)]
            yield Chat(
                (
                    Segment(f"{USER}spell {word} {i}{END_OF_TURN}", True),
                    Segment(ASSISTANT, False),
                    Segment(" ".join(word) + f" {i}", True),
                    Segment(END_OF_TURN + END_OF_TEXT, False),
                )
            )


def test_a_module_that_masks_the_end_of_turn_and_trains_the_user_fails_with_advice(
    root: Path, store: Store
) -> None:
    ds = store.prepare(MisMaskedChats(), root, "mismasked", "char", "stream")
    result = judged(ds)
    end, prompts = result["chat_end_of_turn"], result["chat_prompts_untrained"]
    assert end.verdict is Verdict.fail and end.value == 0.0
    assert "never learns to stop" in end.reason and "<|end|>" in end.reason
    assert prompts.verdict is Verdict.fail and prompts.value > 0.9
    assert "train_on 'assistant'" in prompts.reason
    assert result["chat_replies_trained"].verdict is Verdict.passed  # the replies' text is trained


def test_replies_masked_entirely_fail(root: Path, store: Store) -> None:
    class Unanswered(MisMaskedChats):
        def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Chat]:
            for chat in super().read(path, options, report):
                yield Chat(
                    tuple(Segment(s.text, False) if ASSISTANT not in s.text else s for s in chat.segments)
                )

    ds = store.prepare(Unanswered(), root, "unanswered", "char", "stream")
    replies = judged(ds)["chat_replies_trained"]
    assert replies.verdict is Verdict.fail and replies.value == 0.0
    assert "never learns to answer" in replies.reason


def test_conversations_out_of_role_order_are_counted_and_judged(root: Path, store: Store) -> None:
    chats = clean_chats(100)
    for chat in chats[:30]:  # two user turns in a row
        chat.insert(-1, {"role": "user", "content": "and one more thing"})
    for chat in chats[30:40]:  # a reply to nothing, after the system prompt if there is one
        chat.insert(chat[0]["role"] == "system", {"role": "assistant", "content": "hello there"})
    ds = store.prepare(ChatModule(), root, write_chats(root, chats), "char", "stream")
    module = ds.meta["stats"]["module"]
    assert module["conversations_with_role_problems"] == 40
    assert module["role_order_repeated_role"] == 30 and module["role_order_reply_first"] == 10
    order = judged(ds)["chat_role_order"]
    assert order.verdict is Verdict.warn and order.value == pytest.approx(0.4)
    assert (
        "30 where two user turns" in order.reason
        and "10 where an assistant turn comes before" in order.reason
    )
    assert "merge consecutive turns" in order.reason
    assert judged(ds, role_order_warn=0.1, role_order_fail=0.3)["chat_role_order"].verdict is Verdict.fail


def test_chats_rendered_as_plain_text_are_caught_and_sent_to_the_chat_module(
    root: Path, store: Store
) -> None:
    rng = random.Random(3)
    lines = []
    for _ in range(150):
        turns = conversation(rng)
        text = "".join(f"<|{t['role']}|>{t['content']}<|end|>" for t in turns) + "<|endoftext|>"
        lines.append(json.dumps({"text": text}))
    (root / "rendered.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = store.prepare(discover()["jsonl"], root, "rendered.jsonl", "char", "stream")
    result = judged(ds)
    markers = result["chat_markers"]
    assert markers.verdict is Verdict.warn and markers.value > 0
    assert "<|user|>" in markers.reason and "chat module" in markers.reason
    for name in NAMES[:4]:
        assert result[name].verdict is Verdict.skip and "not a chat dataset" in result[name].reason


def test_plain_text_skips_every_chat_check(root: Path, store: Store) -> None:
    (root / "notes.txt").write_text("the river runs past the stone bridge.\n" * 200, encoding="utf-8")
    ds = store.prepare(discover()["text"], root, "notes.txt", "char", "stream")
    assert set(verdicts(judged(ds)).values()) == {Verdict.skip}


def test_markers_split_into_several_tokens_are_no_chat_tokenizer() -> None:
    by_char = {"<|user|>": [1, 2, 3], END_OF_TEXT: [7]}
    single = single_tokens(lambda text: by_char.get(text, [9, 9]))
    assert single == {END_OF_TEXT: 7} and Markers.of(single) is None
    ids = {m: [i] for i, m in enumerate(("<|system|>", USER, ASSISTANT, END_OF_TURN, END_OF_TEXT))}
    assert Markers.of(single_tokens(lambda text: ids[text])) == Markers(0, 1, 2, 3, 4)


def test_a_pairs_datasets_end_token_is_not_a_marker_spelled_out(root: Path, store: Store) -> None:
    """Pairs rows end in <|endoftext|>, one token: no chat, nothing spelled out, nothing to warn of."""
    (root / "qa.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{w}?", "completion": f" {w[::-1]}"}) + "\n" for w in WORDS * 20),
        encoding="utf-8",
    )
    ds = store.prepare(discover()["jsonl"], root, "qa.jsonl", "char", "pairs")
    assert set(verdicts(judged(ds)).values()) == {Verdict.skip}
