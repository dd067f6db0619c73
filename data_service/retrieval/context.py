"""Each pairs row's context: the passages retrieved for its prompt, cut to ``context_tokens`` tokens, then
the marker that says the prompt comes next; and the ``retrieval`` stats that judge them.

A row reads ``passage 1 \\n---\\n passage 2 ... \\n===\\n prompt completion <end>``: passages best first,
``PASSAGE_SEPARATOR`` between them, ``PROMPT_MARKER`` before the prompt (also when nothing was found).
The query is the prompt alone, never the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_service.errors import DataError
from data_service.modules.base import Example, Pair, flag
from data_service.retrieval.corpus import Corpus
from data_service.retrieval.index import PassageIndex
from data_service.retrieval.leaks import ValPairs, holds, words
from data_service.tokenizers.base import Tokenizer

PASSAGE_SEPARATOR = "\n---\n"
PROMPT_MARKER = "\n===\n"
MARKERS = (PASSAGE_SEPARATOR, PROMPT_MARKER)


@dataclass
class Found:
    """The context retrieved for one prompt: the passages (by number), all their tokens, and those kept."""

    hits: list[int]
    retrieved: int
    kept: np.ndarray


class Retriever:
    """The context that goes before a prompt: the passages found for it, best first, cut to
    ``context_tokens`` tokens, then the prompt marker. Prepare and the Retrieve RPC both ask it."""

    def __init__(self, index: PassageIndex, tok: Tokenizer, k: int, context_tokens: int) -> None:
        self.index = index
        self.tok = tok
        self.k = k
        self.context_tokens = context_tokens
        self.marker = tok.encode(PROMPT_MARKER)

    def find(self, prompts: list[str]) -> list[Found]:
        found = self.index.search(prompts, self.k)
        texts = [PASSAGE_SEPARATOR.join(self.index.passage(n) for n in hits) for hits in found]
        return [
            Found(hits, len(ids), ids[: self.context_tokens])
            for hits, ids in zip(found, self.tok.encode_batch(texts), strict=True)
        ]

    def head(self, found: Found) -> np.ndarray:
        """The token ids a row holds before its prompt."""
        return np.concatenate([found.kept, self.marker]).astype(np.int64)


class Contexts:
    """Makes the context of each batch of rows, counting what the stats report on the way."""

    def __init__(self, corpus: Corpus, index: PassageIndex, tok: Tokenizer, opts: Mapping[str, str]) -> None:
        self.corpus = corpus
        self.index = index
        self.tok = tok
        self.retriever = Retriever(index, tok, int(opts["retrieve_k"]), int(opts["context_tokens"]))
        self.excluded = index.val_passages if flag(opts, "exclude_val_passages") else 0
        self.examples = {"train": 0, "val": 0}
        self.supported = {"train": 0, "val": 0}
        self.tokens_retrieved = 0
        self.tokens_kept = 0
        self.val_leaks = 0
        self.leak_example: str | None = None
        self.unsupported_example: dict[str, str] = {}

    @classmethod
    def build(
        cls,
        corpus: Corpus,
        examples: Iterable[Example],
        in_val: np.ndarray,
        tok: Tokenizer,
        opts: Mapping[str, str],
        folder: Path,
    ) -> Contexts:
        """Index the corpus into ``folder``, with the val examples (read from ``examples``) known."""
        val = ValPairs(
            (ex.prompt, ex.completion)
            for ex, is_val in zip(examples, in_val, strict=False)
            if is_val and isinstance(ex, Pair)
        )
        exclude = flag(opts, "exclude_val_passages")
        index = PassageIndex.build(corpus.passages(), val, exclude, folder)
        if not len(index) and not index.val_passages:
            raise DataError(f"option retrieval_corpus: {corpus.name!r} holds no passages, only blank text")
        return cls(corpus, index, tok, opts)

    def heads(self, batch: list[Example], in_val: np.ndarray) -> list[np.ndarray]:
        """The token ids that go before each pair's prompt: its kept context and the prompt marker."""
        pairs = [ex for ex in batch if isinstance(ex, Pair)]
        assert len(pairs) == len(batch)  # build refused other examples
        heads = []
        for ex, is_val, found in zip(
            pairs, in_val, self.retriever.find([ex.prompt for ex in pairs]), strict=True
        ):
            self._count(ex, "val" if is_val else "train", found)
            heads.append(self.retriever.head(found))
        return heads

    def _count(self, ex: Pair, split: str, found: Found) -> None:
        self.examples[split] += 1
        self.tokens_retrieved += found.retrieved
        self.tokens_kept += len(found.kept)
        context = words(self.tok.decode(found.kept)) if len(found.kept) else []
        answer = words(ex.completion)
        if set(answer) <= set(context):
            self.supported[split] += 1
        else:
            self.unsupported_example.setdefault(split, ex.prompt)
        if (
            split == "val"
            and answer
            and holds(context, answer)
            and self._from_val_holding(found.hits, answer)
        ):
            self.val_leaks += 1
            self.leak_example = self.leak_example or ex.prompt

    def _from_val_holding(self, hits: list[int], answer: list[str]) -> bool:
        """Whether a retrieved passage built from val data holds the answer."""
        return any(self.index.from_val[n] and holds(words(self.index.passage(n)), answer) for n in hits)

    def stats(self) -> dict[str, Any]:
        unsupported = self.unsupported_example
        return {
            "corpus": self.corpus.name,
            "retriever": "bm25",
            "retrieve_k": self.retriever.k,
            "context_tokens": self.retriever.context_tokens,
            "passages": len(self.index),
            "val_passages_excluded": self.excluded,
            "examples": dict(self.examples),
            "supported": dict(self.supported),
            "context_tokens_retrieved": self.tokens_retrieved,
            "context_tokens_kept": self.tokens_kept,
            "val_leaks": self.val_leaks,
            "leak_example": self.leak_example,
            "unsupported_example": unsupported.get("val", unsupported.get("train")),
        }


def tokenizer_text(corpus: Corpus) -> Iterator[str]:
    """What the tokenizer learns of retrieval, beside the examples: the markers and every passage."""
    yield from MARKERS
    yield from corpus.passages()
