"""The chat checks: is loss taken where a chat model learns to answer, and to stop, and nowhere else?

Replies, their closing ``<|end|>`` and the prompt turns are judged on what the train batches carried
(``chat_turns``); role order on the data service's counts, made when it read the conversations; the
markers on the tokenizer and on rows of the batches, decoded. A dataset whose tokenizer has no chat
markers is not a chat dataset: the first four checks skip, the last still looks for markers spelled out.
"""

from __future__ import annotations

from typing import Any

from data_service.chat_template import MARKERS, ROLE_ORDER_PROBLEMS
from simtrain.jobs import ChecksSpec
from trainer_service.report.checks import Check, Verdict, grade
from trainer_service.report.data_checks import Decode

SECTION = "data"
NOT_CHAT = "not a chat dataset: its tokenizer has no chat template markers"


def _pct(share: float) -> str:
    return f"{share:.1%}"


def replies_trained(turns: dict[str, Any], module: dict[str, Any], spec: ChecksSpec) -> Check:
    name, title = "chat_replies_trained", "assistant replies trained"
    threshold, setting = f"fail < {spec.reply_trained_fail}", "checks.reply_trained_fail"
    if not turns["chat_tokenizer"]:
        return Check(name, SECTION, title, Verdict.skip, NOT_CHAT)
    targets, trained = turns["reply_targets"], turns["reply_trained"]
    if module.get("conversations") and not module.get("assistant_turns"):
        reason = (
            f"none of the {module['conversations']} conversations has an assistant turn: there is no "
            "answer to learn; add the replies (role assistant, or gpt in ShareGPT)"
        )
        return Check(name, SECTION, title, Verdict.fail, reason, 0, threshold, setting)
    if not targets:
        reason = "no assistant turn reached the train batches: nothing there teaches the model to answer"
        return Check(name, SECTION, title, Verdict.fail, reason, 0, threshold, setting)
    share = trained / targets
    verdict = grade(share, None, spec.reply_trained_fail, higher_is_worse=False)
    reason = f"{_pct(share)} of the {targets} targets inside assistant replies take loss"
    if verdict is Verdict.fail:
        reason += (
            ": the replies are masked, so the model never learns to answer; the module (or data service) "
            "must take loss on every assistant turn"
        )
    return Check(name, SECTION, title, verdict, reason, share, threshold, setting)


def reply_ends_trained(turns: dict[str, Any], spec: ChecksSpec) -> Check:
    name, title = "chat_end_of_turn", "end of turn trained after each reply"
    threshold, setting = f"fail < {spec.reply_end_fail}", "checks.reply_end_fail"
    if not turns["chat_tokenizer"]:
        return Check(name, SECTION, title, Verdict.skip, NOT_CHAT)
    ends, trained = turns["reply_ends"], turns["reply_ends_trained"]
    if not ends:
        reason = "no reply's closing <|end|> reached the train batches (replies cut at the block?)"
        return Check(name, SECTION, title, Verdict.skip, reason, None, threshold, setting)
    share = trained / ends
    verdict = grade(share, None, spec.reply_end_fail, higher_is_worse=False)
    reason = f"{trained} of {ends} replies' closing <|end|> take loss ({_pct(share)})"
    if verdict is Verdict.fail:
        reason += (
            ": the model never learns to stop, and will run on into the next turn; take loss on the "
            "<|end|> that closes each assistant turn"
        )
    return Check(name, SECTION, title, verdict, reason, share, threshold, setting)


def prompts_untrained(turns: dict[str, Any], module: dict[str, Any], spec: ChecksSpec) -> Check:
    name, title = "chat_prompts_untrained", "system and user turns not trained"
    threshold = f"warn > {spec.prompt_trained_warn}, fail > {spec.prompt_trained_fail}"
    setting = "checks.prompt_trained_warn, checks.prompt_trained_fail"
    if not turns["chat_tokenizer"]:
        return Check(name, SECTION, title, Verdict.skip, NOT_CHAT)
    conversations = module.get("conversations", 0)
    if conversations and module.get("conversations_trained_on_all", 0) == conversations:
        return Check(
            name, SECTION, title, Verdict.skip, "train_on is 'all': every token takes loss, by choice"
        )
    targets, trained = turns["prompt_targets"], turns["prompt_trained"]
    if not targets:
        return Check(name, SECTION, title, Verdict.skip, "no system or user turn reached the train batches")
    share = trained / targets
    verdict = grade(share, spec.prompt_trained_warn, spec.prompt_trained_fail)
    reason = f"{_pct(share)} of the {targets} targets inside system and user turns take loss"
    if verdict is not Verdict.passed:
        reason += (
            ": the model learns to write the user's questions and the system prompt, not only to answer "
            "them; mask those turns (train_on 'assistant'), or say train_on 'all' if that is meant"
        )
    return Check(name, SECTION, title, verdict, reason, share, threshold, setting)


def role_order(turns: dict[str, Any], module: dict[str, Any], spec: ChecksSpec) -> Check:
    name, title = "chat_role_order", "turns in a sane role order"
    threshold = f"warn > {spec.role_order_warn}, fail > {spec.role_order_fail}"
    setting = "checks.role_order_warn, checks.role_order_fail"
    if not turns["chat_tokenizer"]:
        return Check(name, SECTION, title, Verdict.skip, NOT_CHAT)
    conversations = module.get("conversations")
    if not conversations:
        return Check(name, SECTION, title, Verdict.skip, "the data service counted no conversation turns")
    bad = module.get("conversations_with_role_problems", 0)
    share = bad / conversations
    verdict = grade(share, spec.role_order_warn, spec.role_order_fail)
    if not bad:
        reason = f"all {conversations} conversations go system (if any), then user and assistant in turn"
        return Check(name, SECTION, title, verdict, reason, share, threshold, setting)
    kinds = [
        f"{module[f'role_order_{kind}']} where {said}"
        for kind, said in ROLE_ORDER_PROBLEMS.items()
        if module.get(f"role_order_{kind}")
    ]
    reason = f"{bad} of {conversations} conversations ({_pct(share)}) are out of order: {'; '.join(kinds)}"
    if verdict is not Verdict.passed:
        reason += (
            ": a model learns the order it is shown; merge consecutive turns of one role, put the system "
            "prompt first, and end each conversation on a reply"
        )
    return Check(name, SECTION, title, verdict, reason, share, threshold, setting)


def markers_intact(turns: dict[str, Any], sample: list[list[int]], decode: Decode) -> Check:
    """Each marker one token, and no marker spelled out in ordinary characters in the rows trained on."""
    name, title = "chat_markers", "template markers are single tokens"
    chat = turns["chat_tokenizer"]
    texts = [decode(row) for row in sample]
    if any(text is None for text in texts):
        return Check(name, SECTION, title, Verdict.skip, "the data service cannot decode the rows")
    ids = turns.get("marker_ids") or {}
    spelled = {}
    for row, text in zip(sample, texts, strict=True):
        for marker in MARKERS:
            as_token = row.count(ids[marker]) if marker in ids else 0
            if (extra := text.count(marker) - as_token) > 0:
                spelled[marker] = spelled.get(marker, 0) + extra
    if spelled:
        found = ", ".join(f"{m} ×{n}" for m, n in spelled.items())
        if chat:
            reason = (
                f"rows of the train batches spell out {found} in ordinary characters beside the marker "
                "tokens: the module wrote template text into a turn's content; keep markers out of content"
            )
            return Check(name, SECTION, title, Verdict.fail, reason, sum(spelled.values()), "fail > 0")
        reason = (
            f"rows of the train batches spell out {found} in ordinary characters, so the model learns them "
            "letter by letter, the loss covers every turn, and nothing ends a reply; if these are chats "
            "rendered as text, prepare the conversations with the chat module (JSONL of messages) instead"
        )
        return Check(name, SECTION, title, Verdict.warn, reason, sum(spelled.values()), "warn > 0")
    if not chat:
        return Check(name, SECTION, title, Verdict.skip, f"{NOT_CHAT}, and no row spells one out", 0)
    reason = f"each of the {len(MARKERS)} markers is one token, and no row spells one out in characters"
    return Check(name, SECTION, title, Verdict.passed, reason, 0, "fail > 0")


def chat_checks(
    turns: dict[str, Any], module: dict[str, Any], sample: list[list[int]], spec: ChecksSpec, decode: Decode
) -> list[Check]:
    return [
        replies_trained(turns, module, spec),
        reply_ends_trained(turns, spec),
        prompts_untrained(turns, module, spec),
        role_order(turns, module, spec),
        markers_intact(turns, sample, decode),
    ]
