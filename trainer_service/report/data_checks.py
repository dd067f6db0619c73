"""The data section's checks: from the data service's statistics, and from the batches the trainer received.

Statistics come from ``DatasetInfo.stats_json``. Another data service may leave some out; a check whose
number is missing is skipped, with the reason, rather than guessed.
"""

from __future__ import annotations

from typing import Any

from simtrain.jobs import ChecksSpec
from trainer_service.report.checks import Check, Verdict, grade

SECTION = "data"


def _pct(share: float) -> str:
    return f"{share:.1%}"


def _total_examples(stats: dict[str, Any]) -> int | None:
    counts = stats.get("num_examples")
    return sum(counts.values()) if isinstance(counts, dict) else None


def ids_in_range(batches: dict[str, Any], vocab_size: int) -> Check:
    bad, n = batches["out_of_range"], batches["batches"]
    if bad:
        reason = f"{batches['first_problem']}; fix the data service or prepare the dataset again"
        verdict = Verdict.fail
    elif n == 0:
        return Check("token_ids_in_range", SECTION, "token ids in range", Verdict.skip, "no batch arrived")
    else:
        verdict, reason = Verdict.passed, f"every id of {n} batches is below the vocabulary size {vocab_size}"
    return Check("token_ids_in_range", SECTION, "token ids in range", verdict, reason, bad, "fail > 0")


def empty_examples(stats: dict[str, Any], spec: ChecksSpec) -> Check:
    title, setting = "empty examples", "checks.empty_warn, checks.empty_fail"
    total, empty = _total_examples(stats), stats.get("empty_examples")
    if not total or empty is None:
        return Check(
            "empty_examples", SECTION, title, Verdict.skip, "the data service gave no example counts"
        )
    share = empty / total
    verdict = grade(share, spec.empty_warn, spec.empty_fail)
    if verdict is Verdict.passed:
        reason = f"{empty} of {total} examples are empty or whitespace only"
    else:
        reason = (
            f"{empty} of {total} examples ({_pct(share)}) are empty or whitespace only: the module reads "
            "the wrong field or keeps blank records; drop them"
        )
    threshold = f"warn > {spec.empty_warn}, fail > {spec.empty_fail}"
    return Check("empty_examples", SECTION, title, verdict, reason, share, threshold, setting)


def media_only(stats: dict[str, Any]) -> Check:
    count = (stats.get("module") or {}).get("media_only_fields", 0)
    if count:
        reason = (
            f"{count} fields held only an image or a sound and were skipped: those notes teach nothing "
            "as text; add a text field or leave them out"
        )
        return Check("media_only", SECTION, "media-only fields", Verdict.warn, reason, count, "warn > 0")
    return Check("media_only", SECTION, "media-only fields", Verdict.passed, "no field held only media", 0)


def duplicates(stats: dict[str, Any], spec: ChecksSpec) -> Check:
    total, dups = _total_examples(stats), stats.get("duplicate_examples")
    if not total or dups is None:
        return Check(
            "duplicates", SECTION, "duplicates", Verdict.skip, "the data service gave no duplicate count"
        )
    share = dups / total
    verdict = grade(share, spec.duplicates_warn, None)
    reason = f"{dups} of {total} examples ({_pct(share)}) exactly repeat another"
    if verdict is Verdict.warn:
        reason += ": they weigh more in training and make the data smaller than it looks; deduplicate"
    threshold = f"warn > {spec.duplicates_warn}"
    return Check(
        "duplicates", SECTION, "duplicates", verdict, reason, share, threshold, "checks.duplicates_warn"
    )


def split_overlap(stats: dict[str, Any], overlap: dict[str, Any], spec: ChecksSpec) -> Check:
    """Exact overlap as the data service counts it, and near-duplicates as the batches show them."""
    title, setting = "train/val overlap", "checks.overlap_warn, checks.overlap_fail, checks.overlap_ngram"
    threshold = f"warn > {spec.overlap_warn}, fail > {spec.overlap_fail}"
    exact, ratio = stats.get("train_val_overlap"), overlap.get("ratio")
    if exact:
        reason = (
            f"{exact} examples sit in both train and val: val loss measures memory, not generalisation; "
            "split by example before preparing"
        )
        return Check("split_overlap", SECTION, title, Verdict.fail, reason, ratio, threshold, setting)
    if ratio is None:
        reason = "too few val or train batches to compare their content"
        return Check("split_overlap", SECTION, title, Verdict.skip, reason, None, threshold, setting)
    verdict = grade(ratio, spec.overlap_warn, spec.overlap_fail)
    unit = overlap["unit"]
    seen = (
        f"{_pct(overlap['val_hits'])} of val {unit}s occur in what training saw, against "
        f"{_pct(overlap['fresh_hits'])} of unseen train {unit}s (ratio {ratio:.2f})"
    )
    if verdict is Verdict.passed:
        reason = f"val is held out: {seen}"
    else:
        reason = (
            f"val looks copied from train: {seen}; remove near-duplicates (case, spacing) across the split"
        )
    return Check("split_overlap", SECTION, title, verdict, reason, ratio, threshold, setting)


def unseen_val_tokens(stats: dict[str, Any]) -> Check:
    title = "val tokens unseen in train"
    unseen = stats.get("val_tokens_unseen_in_train")
    if unseen is None:
        return Check("unseen_val_tokens", SECTION, title, Verdict.skip, "the data service gave no count")
    if unseen:
        reason = (
            f"{unseen} distinct tokens of val never occur in train "
            f"(e.g. {stats.get('unseen_examples', '')!r}): the model cannot learn them; "
            "add data that uses them"
        )
        return Check("unseen_val_tokens", SECTION, title, Verdict.warn, reason, unseen, "warn > 0")
    return Check("unseen_val_tokens", SECTION, title, Verdict.passed, "every val token occurs in train", 0)


def masked_targets(batches: dict[str, Any], spec: ChecksSpec) -> Check:
    title, share = "targets that take loss", batches["masked_share"]
    threshold = f"fail >= {spec.masked_fail}"
    if share is None:
        return Check("masked_targets", SECTION, title, Verdict.skip, "no batch arrived")
    if share >= spec.masked_fail:
        reason = (
            f"{_pct(share)} of targets are masked (-1), so there is (almost) nothing to learn: the answers "
            "are empty or the packing masks them"
        )
        verdict = Verdict.fail
    else:
        verdict = Verdict.passed
        reason = f"{_pct(1 - share)} of target positions take loss ({_pct(share)} masked: prompts, padding)"
    return Check("masked_targets", SECTION, title, verdict, reason, share, threshold, "checks.masked_fail")


def padding(
    batches: dict[str, Any], spec: ChecksSpec, lengths: dict[str, Any], block_size: int, pairs: bool
) -> Check:
    title, share = "padding", batches["padded_share"]
    threshold = f"warn > {spec.padding_warn}"
    if not pairs:
        return Check("padding", SECTION, title, Verdict.skip, "stream packing fills every block")
    if share is None:
        return Check("padding", SECTION, title, Verdict.skip, "no batch arrived")
    verdict = grade(share, spec.padding_warn, None)
    if verdict is Verdict.warn:
        p95 = lengths.get("p95")
        hint = f"block_size near {int(p95)} (the 95th percentile length)" if p95 else "a smaller block_size"
        reason = f"{_pct(share)} of each block is padding: compute is spent on nothing; use {hint}"
    else:
        reason = f"{_pct(share)} of target positions are padding at block_size {block_size}"
    return Check("padding", SECTION, title, verdict, reason, share, threshold, "checks.padding_warn")


def truncation(batches: dict[str, Any], spec: ChecksSpec, block_size: int, pairs: bool) -> Check:
    title, threshold = "truncated examples", f"warn > {spec.truncated_warn}"
    if not pairs:
        return Check("truncation", SECTION, title, Verdict.skip, "stream packing cuts windows, not examples")
    share = batches["truncated_share"]
    if share is None:
        return Check("truncation", SECTION, title, Verdict.skip, "no example row arrived")
    verdict = grade(share, spec.truncated_warn, None)
    reason = f"{_pct(share)} of examples are longer than block_size {block_size} + 1"
    if verdict is Verdict.warn:
        reason += ": their answers are cut off; raise block_size or shorten the examples"
    return Check("truncation", SECTION, title, verdict, reason, share, threshold, "checks.truncated_warn")


def target_diversity(batches: dict[str, Any], spec: ChecksSpec, top_text: str | None) -> Check:
    title, share = "target diversity", batches["top_target_share"]
    threshold = f"warn > {spec.top_token_warn}, fail > {spec.top_token_fail}"
    setting = "checks.top_token_warn, checks.top_token_fail"
    if share is None:
        return Check("target_diversity", SECTION, title, Verdict.skip, "no target arrived")
    verdict = grade(share, spec.top_token_warn, spec.top_token_fail)
    token = f"token {batches['top_target']}" + (f" ({top_text!r})" if top_text is not None else "")
    reason = (
        f"the commonest target, {token}, is {_pct(share)} of all targets; "
        f"{batches['distinct_targets']} distinct targets, {batches['target_entropy_bits']:.2f} bits each"
    )
    if verdict is not Verdict.passed:
        reason += ": the data is (nearly) one repeated token, so a model learns only to repeat it"
    return Check("target_diversity", SECTION, title, verdict, reason, share, threshold, setting)


def at_block_size(stats: dict[str, Any], block_size: int) -> dict[str, Any] | None:
    """The service's truncated/padded/masked shares at the job's block size, or the nearest it gives."""
    table = stats.get("at_block_size")
    if not isinstance(table, dict) or not table:
        return None
    size = min((int(k) for k in table), key=lambda b: (abs(b - block_size), b))
    return {"block_size": size, **table[str(size)]}


def data_checks(
    stats: dict[str, Any],
    batches: dict[str, Any],
    overlap: dict[str, Any],
    spec: ChecksSpec,
    *,
    vocab_size: int,
    block_size: int,
    pairs: bool,
    top_text: str | None,
) -> list[Check]:
    lengths = stats.get("example_tokens") or {}
    return [
        ids_in_range(batches, vocab_size),
        masked_targets(batches, spec),
        target_diversity(batches, spec, top_text),
        split_overlap(stats, overlap, spec),
        empty_examples(stats, spec),
        duplicates(stats, spec),
        media_only(stats),
        unseen_val_tokens(stats),
        truncation(batches, spec, block_size, pairs),
        padding(batches, spec, lengths, block_size, pairs),
    ]
