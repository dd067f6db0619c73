"""Dataset statistics and the warnings a person should read before training on it.

The block size is only chosen when training starts, so nothing here judges against one: block-size
dependent figures (truncated, padded, masked fractions of pairs) are given for a few block sizes, and
for stream packing the largest block size each split can serve; the trainer's report judges them at
the job's own block size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from data_service.modules.base import Report
from data_service.tokenizers.base import Tokenizer
from data_service.tokenizers.bpe import MIN_VOCAB

if TYPE_CHECKING:
    from data_service.prepare import Scan, _Writer

BLOCK_SIZES = (64, 128, 256, 512, 1024)
COUNT_CHUNK = 1 << 22
# A trained BPE vocabulary with fewer train tokens than this per entry gets a warning: most of its
# tokens are seen too rarely for their embeddings to learn anything.
MIN_TOKENS_PER_VOCAB_ENTRY = 20


def token_counts(writer: _Writer, dtype: str, vocab_size: int) -> np.ndarray:
    """How often each id occurs in a split, reading its file in chunks (read, not memory-mapped:
    mapped pages would count in this process's RSS until the end)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    with writer.path.open("rb") as f:
        while len(chunk := np.fromfile(f, dtype=dtype, count=COUNT_CHUNK)):
            counts += np.bincount(chunk, minlength=vocab_size)
    return counts


def bytes_per_token(writer: _Writer, dtype: str, tok: Tokenizer) -> float | None:
    """UTF-8 bytes of a split's decoded text (special tokens as their text) per token; None when empty.

    Loss per token depends on how much text a token holds; divided by this it becomes loss per byte, so
    runs with different tokenizers can be compared on the same text (bits per byte). Decoded in chunks:
    a multi-byte character cut at a chunk's edge costs a byte or two in millions.
    """
    if not writer.num_tokens:
        return None
    size = 0
    with writer.path.open("rb") as f:
        while len(chunk := np.fromfile(f, dtype=dtype, count=COUNT_CHUNK)):
            size += len(tok.decode(chunk).encode("utf-8"))
    return size / writer.num_tokens


def length_summary(lengths: np.ndarray) -> dict[str, Any]:
    """min/mean/percentiles/max and a histogram with power-of-two bins (0, 1, 2-3, 4-7, ...)."""
    if not len(lengths):
        return {"count": 0}
    top = max(int(lengths.max()), 1)
    edges = [0, 1] + [2**k for k in range(1, top.bit_length() + 1)]
    counts, _ = np.histogram(lengths, bins=[*edges, edges[-1] * 2])
    return {
        "count": len(lengths),
        "min": int(lengths.min()),
        "mean": float(lengths.mean()),
        "p50": float(np.percentile(lengths, 50)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "histogram": {"bin_starts": edges, "counts": counts.tolist()},
    }


def pair_fractions(
    total: np.ndarray, prompt: np.ndarray, block_size: int, learned: np.ndarray | None = None
) -> dict[str, float]:
    """For rows of ``block_size`` targets: the share of examples cut short, and of target positions
    that are padding or masked (-1: prompt and padding). ``learned``, the targets per row that take
    loss, is given where a mask says so (chats); otherwise all after the prompt do."""
    targets = np.minimum(total, block_size + 1) - 1  # real (x, y) positions in each row
    positions = len(total) * block_size
    if learned is None:
        learned = np.clip(targets - np.maximum(prompt - 1, 0), 0, None)
    return {
        "truncated": float(np.mean(total > block_size + 1)),
        "padded": float(1 - targets.sum() / positions),
        "masked": float(1 - learned.sum() / positions),
    }


def dataset_stats(
    dtype: str,
    tok: Tokenizer,
    writers: dict[str, _Writer],
    scan: Scan,
    contents: np.ndarray,
    in_val: np.ndarray,
    pairs: bool,
    report: Report,
    val_fraction: float,
) -> dict[str, Any]:
    counts = {s: token_counts(w, dtype, tok.vocab_size) for s, w in writers.items()}
    unseen = np.flatnonzero((counts["val"] > 0) & (counts["train"] == 0))
    lengths = np.concatenate([np.frombuffer(w.example_tokens, np.int64) for w in writers.values()])
    overlap = np.intersect1d(contents[~in_val], contents[in_val])
    total_tokens = sum(w.num_tokens for w in writers.values())
    stats: dict[str, Any] = {
        "tokenizer": tok.kind,
        "vocab_size": tok.vocab_size,
        "num_documents": scan.documents,
        "num_examples": {s: w.num_examples for s, w in writers.items()},
        "num_tokens": {s: w.num_tokens for s, w in writers.items()},
        "val_fraction_of_tokens": writers["val"].num_tokens / max(total_tokens, 1),
        "val_bytes_per_token": bytes_per_token(writers["val"], dtype, tok),
        "example_tokens": length_summary(lengths),
        "empty_examples": scan.empty,
        "duplicate_examples": len(contents) - len(np.unique(contents)),
        "train_val_overlap": len(overlap),
        "val_tokens_unseen_in_train": len(unseen),
        "unseen_examples": tok.decode(unseen[:10]) if len(unseen) else "",
        "module": dict(sorted(report.counts.items())),
        "split_groups": len(np.unique(np.frombuffer(scan.keys, np.uint64))),
    }
    examples, groups = len(contents), stats["split_groups"]
    why = {s: m for s, w in writers.items() if (m := why_empty(s, w, examples, groups, val_fraction))}
    if why:
        stats["why_empty"] = why
    if len(sources := source_counts(writers)) > 1:
        stats["sources"] = sources
    masked = any(w.mask is not None for w in writers.values())
    if masked:
        stats["trained_tokens"] = {s: w.trained_tokens for s, w in writers.items()}
    if pairs:
        total = lengths
        prompt = np.concatenate([np.frombuffer(w.prompt_tokens, np.int64) for w in writers.values()])
        stats["prompt_tokens"] = length_summary(prompt)
        stats["at_block_size"] = {
            str(b): pair_fractions(total, prompt, b, _learned(writers, b) if masked else None)
            for b in BLOCK_SIZES
        }
    else:
        # A window's targets are a run of the split's tokens, so on average this share takes no loss.
        untrained = 1 - sum(w.trained_tokens for w in writers.values()) / max(total_tokens, 1)
        stats["at_block_size"] = {
            str(b): {"truncated": 0.0, "padded": 0.0, "masked": untrained if masked else 0.0}
            for b in BLOCK_SIZES
        }
        # A window is block_size + 1 tokens, so a split of n tokens serves block sizes below n.
        stats["max_block_size"] = {s: max(w.num_tokens - 1, 0) for s, w in writers.items()}
    return stats


def source_counts(writers: dict[str, _Writer]) -> dict[str, dict[str, dict[str, int]]]:
    """Per source an example named: its examples and tokens in each split (separators not counted)."""
    names = sorted({name for w in writers.values() for name in w.sources})
    return {
        name: {
            what: {s: w.sources.get(name, [0, 0])[i] for s, w in writers.items()}
            for i, what in enumerate(("examples", "tokens"))
        }
        for name in names
    }


def _learned(writers: dict[str, _Writer], block_size: int) -> np.ndarray:
    return np.concatenate([np.frombuffer(w.learned_at[block_size], np.int64) for w in writers.values()])


def why_empty(split: str, w: _Writer, examples: int, groups: int, val_fraction: float) -> str | None:
    """Why a split came out with nothing to sample, and what would change it; None if it has tokens."""
    if w.num_tokens:
        return None
    if w.num_examples:
        return f"its {w.num_examples} examples are all empty, so they hold no tokens; drop them or add text"
    if split == "val" and val_fraction <= 0:
        return "val_fraction is 0, so nothing was held out; set it above 0 to have a val split"
    if split == "val" and groups == 1:
        return (
            f"the examples ({examples}) all fall in one split group (examples are grouped by their "
            "text, pairs by their prompt, and a group never sits on both sides), so val cannot take any "
            "without leaking it into train; add distinct examples (another val_fraction cannot help)"
        )
    return None


def dataset_warnings(
    stats: dict[str, Any], tok: Tokenizer, writers: dict[str, _Writer], report: Report
) -> list[str]:
    """Problems a person should know before training, one sentence each."""
    warnings = list(report.warnings)
    for split, w in writers.items():
        if w.num_tokens == 0:
            why = stats.get("why_empty", {}).get(split)
            said = f": {why}." if why else ", so nothing can be sampled from it."
            warnings.append(f"The {split} split is empty{said}")
    if stats["val_tokens_unseen_in_train"]:
        warnings.append(
            f"{stats['val_tokens_unseen_in_train']} distinct tokens of the val split never occur in train "
            f"(e.g. {stats['unseen_examples']!r}), so the model cannot learn them."
        )
    n = sum(stats["num_examples"].values())
    if stats["duplicate_examples"] and stats["duplicate_examples"] >= 0.01 * n:
        warnings.append(
            f"{stats['duplicate_examples']} of {n} examples are exact duplicates of another; "
            "they stay on one side of the split, but weigh more in training."
        )
    if stats["empty_examples"]:
        warnings.append(f"{stats['empty_examples']} examples are empty or whitespace only.")
    media = report.counts.get("media_only_fields", 0)
    if media:
        warnings.append(
            f"{media} fields held only media (images or sounds) and were skipped, not kept as markup."
        )
    dropped = report.counts.get("media_dropped_fields", 0)
    if dropped:
        warnings.append(
            f"{dropped} fields mixed text with images (or sounds): the images were dropped and only "
            "the text kept, so the model never sees what they showed."
        )
    if tok.kind == "bpe":
        warnings += _bpe_vocab_warning(stats["num_tokens"]["train"], tok)
    return warnings


def _bpe_vocab_warning(train_tokens: int, tok: Tokenizer) -> list[str]:
    """A vocabulary the train split cannot support, with a vocab_size it could: the power of two at or
    below train_tokens / MIN_TOKENS_PER_VOCAB_ENTRY (a smaller vocabulary also makes more tokens)."""
    vocab = tok.vocab_size
    if train_tokens >= MIN_TOKENS_PER_VOCAB_ENTRY * vocab:
        return []
    said = (
        f"The BPE vocabulary has {vocab} entries for {train_tokens} train tokens "
        f"({train_tokens / vocab:.1f} per entry, under {MIN_TOKENS_PER_VOCAB_ENTRY}): most learned tokens "
        "are seen too rarely to train"
    )
    least = MIN_VOCAB + vocab - tok.base_vocab_size  # the byte alphabet, plus the special tokens
    wanted = train_tokens // MIN_TOKENS_PER_VOCAB_ENTRY
    if wanted <= least:
        if vocab <= least:
            return [f"{said}; this is the least BPE takes: use the byte tokenizer, or add data."]
        return [f"{said}; use vocab_size {least} (the least BPE takes) or the byte tokenizer, or add data."]
    return [f"{said}; use a smaller vocab_size, about {max(least, 2 ** (wanted.bit_length() - 1))}."]
