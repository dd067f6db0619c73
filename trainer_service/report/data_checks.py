"""The data section's checks: from the data service's statistics, and from the batches the trainer received.

Statistics come from ``DatasetInfo.stats_json``. Another data service may leave some out; a check whose
number is missing is skipped, with the reason, rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simtrain.jobs import ChecksSpec
from trainer_service.report.checks import Check, Verdict, grade

SECTION = "data"
Decode = Callable[[list[int]], str | None]  # token ids to text; None when the data service cannot say
# A BPE vocabulary is suggested as the power of two that gives checks.vocab_tokens_warn train tokens per
# entry (the data service's own warning suggests the same), and no smaller than this: byte-level BPE
# starts from 256 byte tokens, so 512 leaves room for some merges.
SMALLEST_SUGGESTED_VOCAB = 512


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


def media(stats: dict[str, Any]) -> Check:
    """Fields whose images or sounds were dropped (Anki): alone, or beside the text that was kept."""
    module = stats.get("module") or {}
    only, mixed = module.get("media_only_fields", 0), module.get("media_dropped_fields", 0)
    title = "media in fields"
    if not (only or mixed):
        return Check("media", SECTION, title, Verdict.passed, "no field held media", 0, "warn > 0")
    said = []
    if only:
        said.append(f"{only} fields held only an image or a sound and were skipped")
    if mixed:
        said.append(f"{mixed} fields mixed text with media, which was dropped and only the text kept")
    reason = (
        "; ".join(said) + ": the model never sees what the media showed; say it in the text, or leave "
        "those notes out"
    )
    return Check("media", SECTION, title, Verdict.warn, reason, only + mixed, "warn > 0")


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


def truncation(
    batches: dict[str, Any], spec: ChecksSpec, lengths: dict[str, Any], block_size: int, pairs: bool
) -> Check:
    title = "truncated examples"
    threshold = f"warn > {spec.truncated_warn}, fail > {spec.truncated_fail}"
    setting = "checks.truncated_warn, checks.truncated_fail"
    if not pairs:
        return Check("truncation", SECTION, title, Verdict.skip, "stream packing cuts windows, not examples")
    share = batches["truncated_share"]
    if share is None:
        return Check("truncation", SECTION, title, Verdict.skip, "no example row arrived")
    verdict = grade(share, spec.truncated_warn, spec.truncated_fail)
    reason = f"{_pct(share)} of examples are longer than block_size {block_size} + 1"
    untrained = batches.get("untrained_row_share") or 0.0
    if untrained:
        reason += (
            f", and in {_pct(untrained)} of rows the prompt alone fills the block, so no answer token is "
            "trained at all"
        )
    if verdict is not Verdict.passed:
        p95 = lengths.get("p95")
        hint = f"block_size {int(p95) - 1} keeps 95% of examples whole" if p95 else "raise block_size"
        reason += f": their answers are cut off at the block; {hint}, or shorten the prompts and answers"
    return Check("truncation", SECTION, title, verdict, reason, share, threshold, setting)


def padding_in_targets(batches: dict[str, Any], spec: ChecksSpec, pairs: bool, decode: Decode) -> Check:
    """Pairs rows whose targets end in one token repeated to the end of the block: padding that takes loss."""
    title = "loss taken on padding"
    threshold = f"warn > {spec.pad_targets_warn}, fail > {spec.pad_targets_fail}"
    setting = "checks.pad_targets_warn, checks.pad_targets_fail"
    if not pairs:
        return Check("padding_in_targets", SECTION, title, Verdict.skip, "stream packing has no padding")
    share = batches.get("pad_row_share")
    if share is None:
        return Check("padding_in_targets", SECTION, title, Verdict.skip, "no example row arrived")
    verdict = grade(share, spec.pad_targets_warn, spec.pad_targets_fail)
    if verdict is Verdict.passed:
        reason = f"{_pct(share)} of rows end in a run of one repeated target: padding is masked"
    else:
        token = _token(batches["pad_token"], decode)
        reason = (
            f"{_pct(share)} of rows end in {token} repeated to the end of the block, and those targets "
            "take loss: the model learns to pad, and the loss is mostly padding; the data service must "
            "mask padding with -1 in y"
        )
    return Check("padding_in_targets", SECTION, title, verdict, reason, share, threshold, setting)


def answer_diversity(answers: dict[str, Any] | None, spec: ChecksSpec, decode: Decode) -> Check:
    """Pairs: the share of the commonest answer among the distinct examples trained on."""
    title = "answers carry information"
    threshold = f"warn > {spec.answer_top_warn}, fail > {spec.answer_top_fail}"
    setting = "checks.answer_top_warn, checks.answer_top_fail"
    if answers is None:
        return Check("answer_diversity", SECTION, title, Verdict.skip, "pairs packing only")
    if not answers.get("examples"):
        return Check("answer_diversity", SECTION, title, Verdict.skip, "no trained example arrived")
    share, n = answers["top_answer_share"], answers["examples"]
    verdict = grade(share, spec.answer_top_warn, spec.answer_top_fail)
    ids = answers["top_answer_ids"]
    text = decode(ids[:-1]) if len(ids) > 1 else None  # the answer without its end token
    top = repr(text) if text is not None else f"tokens {ids}"
    reason = (
        f"the commonest answer, {top}, is {_pct(share)} of {n} distinct examples; "
        f"{answers['distinct_answers']} distinct answers, {answers['answer_entropy_bits']:.2f} bits, "
        f"{answers['answer_entropy_given_prompt_bits']:.2f} bits given the prompt"
    )
    if verdict is not Verdict.passed:
        reason += (
            ": a model scores by always giving it, without reading the prompt; check the answer field, "
            "or balance the answers"
        )
    return Check("answer_diversity", SECTION, title, verdict, reason, share, threshold, setting)


def vocab_size(stats: dict[str, Any], spec: ChecksSpec, vocab: int, tokenizer: str) -> Check:
    """Train tokens per vocabulary entry: too few, and most embeddings are seen too rarely to learn."""
    title, threshold = "vocabulary fits the data", f"warn < {spec.vocab_tokens_warn} tokens per entry"
    train = (stats.get("num_tokens") or {}).get("train")
    if not train:
        return Check("vocab_size", SECTION, title, Verdict.skip, "the data service gave no train token count")
    per = train / vocab
    verdict = grade(per, spec.vocab_tokens_warn, None, higher_is_worse=False)
    reason = f"{train} train tokens for a vocabulary of {vocab}: {per:.1f} per entry"
    if verdict is Verdict.warn and tokenizer == "bpe":
        wanted = max(int(train / spec.vocab_tokens_warn), 1)
        suggested = max(SMALLEST_SUGGESTED_VOCAB, 2 ** (wanted.bit_length() - 1))  # a power of two below
        reason += (
            ": most learned tokens are seen only a few times, so their embeddings barely train; set the "
            f"tokenizer option vocab_size to about {suggested}"
        )
        if wanted < SMALLEST_SUGGESTED_VOCAB:
            reason += ", or use the byte tokenizer, or add data"
    elif verdict is Verdict.warn:
        reason += ": the text is small for its vocabulary, so rare tokens barely train; add data"
    return Check("vocab_size", SECTION, title, verdict, reason, per, threshold, "checks.vocab_tokens_warn")


def batches_served(refused: str | None) -> Check:
    """Whether the data service served every stream the job asked for; a refusal says what to change."""
    title = "data service serves the job"
    if refused:
        return Check("batches_served", SECTION, title, Verdict.fail, refused, None, "fail on a refusal")
    reason = "every stream the job asked for was served"
    return Check("batches_served", SECTION, title, Verdict.passed, reason, None, "fail on a refusal")


def target_diversity(batches: dict[str, Any], spec: ChecksSpec, decode: Decode) -> Check:
    title, share = "target diversity", batches["top_target_share"]
    threshold = f"warn > {spec.top_token_warn}, fail > {spec.top_token_fail}"
    setting = "checks.top_token_warn, checks.top_token_fail"
    if share is None:
        return Check("target_diversity", SECTION, title, Verdict.skip, "no target arrived")
    verdict = grade(share, spec.top_token_warn, spec.top_token_fail)
    token = _token(batches["top_target"], decode)
    reason = (
        f"the commonest target, {token}, is {_pct(share)} of all targets; "
        f"{batches['distinct_targets']} distinct targets, {batches['target_entropy_bits']:.2f} bits each"
    )
    if verdict is not Verdict.passed:
        reason += ": the data is (nearly) one repeated token, so a model learns only to repeat it"
    return Check("target_diversity", SECTION, title, verdict, reason, share, threshold, setting)


def _token(token: int, decode: Decode) -> str:
    text = decode([token])
    return f"token {token}" + (f" ({text!r})" if text is not None else "")


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
    answers: dict[str, Any] | None,
    spec: ChecksSpec,
    *,
    vocab: int,
    tokenizer: str,
    block_size: int,
    pairs: bool,
    refused: str | None,
    decode: Decode,
) -> list[Check]:
    lengths = stats.get("example_tokens") or {}
    return [
        batches_served(refused),
        ids_in_range(batches, vocab),
        masked_targets(batches, spec),
        target_diversity(batches, spec, decode),
        split_overlap(stats, overlap, spec),
        empty_examples(stats, spec),
        duplicates(stats, spec),
        media(stats),
        unseen_val_tokens(stats),
        vocab_size(stats, spec, vocab, tokenizer),
        truncation(batches, spec, lengths, block_size, pairs),
        padding_in_targets(batches, spec, pairs, decode),
        padding(batches, spec, lengths, block_size, pairs),
        answer_diversity(answers, spec, decode),
    ]
