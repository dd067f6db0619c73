"""A prepared dataset's statistics, for people: one "what: value" line each, token examples as tokens."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Column, Table


def _tokens(text: str | list[str], tokenizer: str) -> str:
    """Token examples as tokens (``'b' 'n'``): a list as given, a char or byte tokenizer's string split up."""
    if isinstance(text, str):
        tokens = list(text) if tokenizer in ("char", "byte") else [text]
    else:
        tokens = [str(t) for t in text]
    return " ".join(repr(t) for t in tokens)


def _split_counts(stats: dict[str, Any], key: str) -> str:
    value = stats[key]
    if isinstance(value, dict):
        return ", ".join(
            f"{split} {n:,}" if isinstance(n, int) else f"{split} {n}" for split, n in value.items()
        )
    return f"{value:,}" if isinstance(value, int) else str(value)


def _lengths(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "none"
    return (
        f"min {summary['min']}, mean {summary['mean']:.1f}, median {summary['p50']:.0f}, "
        f"p95 {summary['p95']:.0f}, max {summary['max']}"
    )


def _at_block_sizes(table: dict[str, dict[str, float]]) -> str:
    return "; ".join(
        f"{block}: {v['truncated']:.1%} truncated, {v['padded']:.1%} padded, {v['masked']:.1%} masked"
        for block, v in table.items()
    )


def _sources(sources: dict[str, dict[str, dict[str, int]]]) -> str:
    """One line per source: its examples and tokens over both splits."""
    return "\n".join(
        f"{name}: {sum(c['examples'].values()):,} examples, {sum(c['tokens'].values()):,} tokens "
        f"(train {c['examples']['train']:,}, val {c['examples']['val']:,})"
        for name, c in sources.items()
    )


def _retrieval(r: dict[str, Any]) -> str:
    """Where the context comes from, how much of it is kept, and whether it holds the answers."""
    examples, supported = sum(r["examples"].values()), sum(r["supported"].values())
    retrieved, kept = r["context_tokens_retrieved"], r["context_tokens_kept"]
    return (
        f"{r['retriever']} over {r['corpus']} ({r['passages']:,} passages, {r['val_passages_excluded']:,} "
        f"built from val left out), top {r['retrieve_k']}, up to {r['context_tokens']} tokens; answer in "
        f"the context for {supported:,} of {examples:,} examples; {kept:,} of {retrieved:,} context tokens "
        f"kept; {r['val_leaks']:,} val answers given away"
    )


def _memory(m: dict[str, Any]) -> str:
    """How many examples each row remembers, and how many rows had any before them."""
    rows = m["rows_with_memory"]
    return (
        f"the {m['examples_before']} examples before each row in its document and split, untrained; "
        f"rows with some: train {rows['train']:,}, val {rows['val']:,}"
    )


# The statistics a data service of ours gives, in reading order, each with its words and its format.
KNOWN_STATS = {
    "num_documents": ("documents", lambda s: f"{s['num_documents']:,}"),
    "num_examples": ("examples", lambda s: _split_counts(s, "num_examples")),
    "num_tokens": ("tokens", lambda s: _split_counts(s, "num_tokens")),
    "val_fraction_of_tokens": ("val share of tokens", lambda s: f"{s['val_fraction_of_tokens']:.1%}"),
    "example_tokens": ("tokens per example", lambda s: _lengths(s["example_tokens"])),
    "prompt_tokens": ("tokens per prompt", lambda s: _lengths(s["prompt_tokens"])),
    "empty_examples": ("empty examples", lambda s: f"{s['empty_examples']:,}"),
    "duplicate_examples": ("duplicate examples", lambda s: f"{s['duplicate_examples']:,}"),
    "train_val_overlap": ("examples in both train and val", lambda s: f"{s['train_val_overlap']:,}"),
    "val_tokens_unseen_in_train": (
        "val tokens unseen in train",
        lambda s: f"{s['val_tokens_unseen_in_train']:,}",
    ),
    "split_groups": ("split groups", lambda s: f"{s['split_groups']:,}"),
    "max_block_size": ("largest block size", lambda s: _split_counts(s, "max_block_size")),
    "trained_tokens": ("tokens that take loss", lambda s: _split_counts(s, "trained_tokens")),
    "sources": ("per source", lambda s: _sources(s["sources"])),
    "retrieval": ("retrieval", lambda s: _retrieval(s["retrieval"])),
    "memory": ("episodic memory", lambda s: _memory(s["memory"])),
    "module": ("module counts", lambda s: ", ".join(f"{k} {v}" for k, v in s["module"].items()) or "none"),
}
SHOWN_ELSEWHERE = {"tokenizer", "vocab_size", "histogram"}


def stats_table(stats: dict[str, Any], tokenizer: str) -> Table:
    """The statistics as 'what: value' lines; ones this CLI does not know are shown as compact JSON."""
    table = Table(Column(no_wrap=True, style="dim"), Column(ratio=1), box=None, show_header=False)
    for key, (words, shown) in KNOWN_STATS.items():
        if key in stats:
            try:
                table.add_row(words, escape(shown(stats)))
            except (KeyError, TypeError, ValueError, AttributeError):
                table.add_row(words, escape(json.dumps(stats[key])))
    if stats.get("unseen_examples"):
        table.add_row("unseen in train, e.g.", escape(_tokens(stats["unseen_examples"], tokenizer)))
    if isinstance(blocks := stats.get("at_block_size"), dict) and any(
        any(v.values()) for v in blocks.values() if isinstance(v, dict)
    ):
        try:
            table.add_row("at block size", escape(_at_block_sizes(blocks)))
        except (KeyError, TypeError, ValueError):
            table.add_row("at block size", escape(json.dumps(blocks)))
    for split, why in (stats.get("why_empty") or {}).items():
        table.add_row(f"{split} is empty", escape(str(why)))
    known = set(KNOWN_STATS) | SHOWN_ELSEWHERE | {"unseen_examples", "at_block_size", "why_empty"}
    for key, value in stats.items():
        if key not in known:
            table.add_row(
                escape(key.replace("_", " ")), escape(value if isinstance(value, str) else json.dumps(value))
            )
    return table
