"""The retrieval preparation options, in one canonical spelling; all are left out when retrieval is off,
so the ids of datasets without retrieval do not change."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from data_service.errors import DataError
from data_service.modules.base import Option, flag, positive_int

BUILTIN = "builtin"
RETRIEVERS = ("bm25",)
MAX_RETRIEVE_K = 64
MAX_CONTEXT_TOKENS = 1 << 16

OPTIONS = (
    Option(
        "retrieval_corpus",
        "Passages to retrieve from for each pairs prompt: a .txt/.md/.jsonl/.apkg file or a directory of "
        "them under the data root, or 'builtin' (the module's own); empty: no retrieval.",
        "",
    ),
    Option("retrieve_k", "How many passages are retrieved per prompt (with retrieval_corpus).", "3"),
    Option("context_tokens", "Tokens the retrieved passages are cut to (with retrieval_corpus).", "256"),
    Option("retriever", f"How passages are ranked: {', '.join(RETRIEVERS)} (with retrieval_corpus).", "bm25"),
    Option(
        "exclude_val_passages",
        "Leave passages holding a val example's prompt and answer out of the index (with retrieval_corpus).",
        "true",
    ),
)
NAMES = tuple(o.name for o in OPTIONS)


def canonical_retrieval(opts: dict[str, str], given: Mapping[str, str]) -> None:
    """Normalise the retrieval options in ``opts`` in place, or drop them all when there is no corpus."""
    corpus = opts["retrieval_corpus"].strip()
    if not corpus:
        stray = [name for name in NAMES[1:] if name in given]
        if stray:
            raise DataError(
                f"option(s) {', '.join(stray)} apply only with retrieval_corpus: name a corpus under the "
                f"data root (or {BUILTIN!r}), or leave them out"
            )
        for name in NAMES:
            del opts[name]
        return
    opts["retrieval_corpus"] = corpus if corpus == BUILTIN else posixpath.normpath(corpus)
    opts["retrieve_k"] = str(positive_int(opts, "retrieve_k", MAX_RETRIEVE_K))
    opts["context_tokens"] = str(positive_int(opts, "context_tokens", MAX_CONTEXT_TOKENS))
    if opts["retriever"] not in RETRIEVERS:
        raise DataError(f"option retriever must be one of {', '.join(RETRIEVERS)}, got {opts['retriever']!r}")
    opts["exclude_val_passages"] = "true" if flag(opts, "exclude_val_passages") else "false"
