"""The retrieval checks: does the retrieved context hold the answers, does it fit, and does it leak val?

All three read the data service's ``retrieval`` statistics, made when it built each row's context; a
dataset prepared without a retrieval corpus has none, and they skip.
"""

from __future__ import annotations

from typing import Any

from simtrain.jobs import ChecksSpec
from trainer_service.report.checks import Check, Verdict, grade

SECTION = "data"
NO_RETRIEVAL = "the dataset has no retrieval corpus"


def _pct(share: float) -> str:
    return f"{share:.1%}"


def support(retrieval: dict[str, Any] | None, spec: ChecksSpec) -> Check:
    name, title = "retrieval_support", "answers found in the retrieved context"
    threshold = f"warn < {spec.retrieval_support_warn}, fail < {spec.retrieval_support_fail}"
    setting = "checks.retrieval_support_warn, checks.retrieval_support_fail"
    if retrieval is None:
        return Check(name, SECTION, title, Verdict.skip, NO_RETRIEVAL)
    examples, supported = sum(retrieval["examples"].values()), sum(retrieval["supported"].values())
    if not examples:
        return Check(name, SECTION, title, Verdict.skip, "no example was given a context")
    share = supported / examples
    verdict = grade(share, spec.retrieval_support_warn, spec.retrieval_support_fail, higher_is_worse=False)
    reason = (
        f"{supported} of {examples} examples ({_pct(share)}) have every word of their answer in the context "
        f"retrieved for them (up to {retrieval['retrieve_k']} passages, {retrieval['context_tokens']} tokens)"
    )
    if verdict is not Verdict.passed:
        example = retrieval.get("unsupported_example")
        reason += (
            (f", e.g. not for {example!r}" if example else "")
            + ": retrieval cannot help with the rest; the corpus lacks those facts, or the prompts share "
            "no words with the passages that hold them; add passages, raise retrieve_k or context_tokens"
        )
    return Check(name, SECTION, title, verdict, reason, share, threshold, setting)


def context_cut(retrieval: dict[str, Any] | None, spec: ChecksSpec) -> Check:
    name, title = "retrieval_context_cut", "retrieved context kept whole"
    threshold = f"warn > {spec.context_cut_warn}, fail > {spec.context_cut_fail}"
    setting = "checks.context_cut_warn, checks.context_cut_fail"
    if retrieval is None:
        return Check(name, SECTION, title, Verdict.skip, NO_RETRIEVAL)
    retrieved, kept = retrieval["context_tokens_retrieved"], retrieval["context_tokens_kept"]
    if not retrieved:
        return Check(name, SECTION, title, Verdict.skip, "no passage was retrieved for any example")
    share = 1 - kept / retrieved
    verdict = grade(share, spec.context_cut_warn, spec.context_cut_fail)
    reason = (
        f"{_pct(share)} of the {retrieved} retrieved context tokens were cut at context_tokens "
        f"{retrieval['context_tokens']}"
    )
    if verdict is not Verdict.passed:
        reason += (
            ": the lower-ranked passages lose their end, and with it facts the answers may need; raise "
            "context_tokens (and block_size with it) or lower retrieve_k"
        )
    return Check(name, SECTION, title, verdict, reason, share, threshold, setting)


def leaks(retrieval: dict[str, Any] | None, spec: ChecksSpec) -> Check:
    name, title = "retrieval_leak", "val answers not given away by the corpus"
    threshold, setting = f"fail > {spec.retrieval_leak_fail}", "checks.retrieval_leak_fail"
    if retrieval is None:
        return Check(name, SECTION, title, Verdict.skip, NO_RETRIEVAL)
    val = retrieval["examples"].get("val", 0)
    if not val:
        return Check(name, SECTION, title, Verdict.skip, "the val split has no example")
    leaked = retrieval["val_leaks"]
    share = leaked / val
    verdict = grade(share, None, spec.retrieval_leak_fail)
    excluded = retrieval.get("val_passages_excluded", 0)
    if verdict is Verdict.passed:
        reason = (
            f"no val answer is copied from a passage built from val data ({excluded} such passages left out)"
        )
        return Check(name, SECTION, title, verdict, reason, share, threshold, setting)
    example = retrieval.get("leak_example")
    reason = (
        f"{leaked} of {val} val examples ({_pct(share)}) find their own answer in a retrieved passage built "
        "from val data" + (f", e.g. {example!r}" if example else "") + ": val loss measures copying, not "
        "retrieval; keep val-built passages out (exclude_val_passages true, the default), or take the "
        "questions and answers out of the corpus"
    )
    return Check(name, SECTION, title, verdict, reason, share, threshold, setting)


def retrieval_checks(stats: dict[str, Any], spec: ChecksSpec) -> list[Check]:
    retrieval = stats.get("retrieval")
    return [support(retrieval, spec), context_cut(retrieval, spec), leaks(retrieval, spec)]
