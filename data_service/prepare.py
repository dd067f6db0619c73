"""Building a prepared dataset in two streaming passes over the module's examples.

Pass 1 trains the tokenizer and records a hash and a size per example, enough to choose the split.
Pass 2 encodes each example and appends its tokens to its split's file. Neither pass holds the
source's text or tokens whole, so a source far bigger than memory prepares in bounded memory.

On disk, per split: ``<split>.bin`` (the token ids); for ``pairs`` packing also ``<split>.rows.bin``,
int64 rows of (start, prompt length, total length), each example's tokens being prompt, completion,
then the end token (a chat's tokens end in the template's own end token; with a retrieval corpus, the
retrieved context comes first and counts in the prompt length; see ``data_service.retrieval``; with
``memory_examples``, the document's examples before it come first of all: ``data_service.memory``). A
dataset with chats in it (``meta["masked"]``) also has ``<split>.mask.bin``: one uint8 per token, 1
where loss is taken when that token is the target, 0 where it is not (a user turn, the template's
markers).
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from data_service import tokenizers
from data_service.chat_template import END_OF_TEXT, without_markers
from data_service.errors import DataError
from data_service.memory import Memory
from data_service.modules.base import Chat, DataModule, Example, Pair, Report, Text
from data_service.options import token_dtype
from data_service.retrieval.context import Contexts, tokenizer_text
from data_service.retrieval.corpus import Corpus
from data_service.split import choose_val, key_hash
from data_service.stats import BLOCK_SIZES, dataset_stats, dataset_warnings
from data_service.tokenizers.base import Tokenizer

SPLITS = ("train", "val")
END = END_OF_TEXT
ENCODE_BATCH = 256


@dataclass
class Scan:
    """Pass 1's record: per example, its split key, content hash and size in characters."""

    # Compact arrays, not lists of Python ints: a big source has millions of examples.
    keys: array[int] = field(default_factory=lambda: array("Q"))
    contents: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    documents: int = 0
    empty: int = 0
    texts: int = 0
    pairs: int = 0
    chats: int = 0


def _scan(examples: Iterable[Example], scan: Scan, separator: str) -> Iterator[str]:
    """Yield the text the tokenizer learns from, recording each example on the way."""
    yield separator
    for ex in examples:
        if isinstance(ex, Pair):
            scan.pairs += 1
            scan.documents += 1
            scan.keys.append(key_hash(ex.prompt))
            scan.contents.append(key_hash(ex.prompt + "\0" + ex.completion))
            scan.sizes.append(len(ex.prompt) + len(ex.completion))
            scan.empty += not ex.completion.strip()
            yield ex.prompt
            yield ex.completion
        elif isinstance(ex, Text):
            scan.texts += 1
            scan.documents += ex.new_doc
            h = key_hash(ex.text)
            scan.keys.append(h)
            scan.contents.append(h)
            scan.sizes.append(len(ex.text))
            scan.empty += not ex.text.strip()
            yield ex.text
        elif isinstance(ex, Chat):
            scan.chats += 1
            scan.documents += 1
            text = ex.text
            scan.keys.append(key_hash(ex.prompt))
            scan.contents.append(key_hash(text))
            scan.sizes.append(len(text))
            plain = without_markers(text)  # the markers are special tokens, not text to learn
            scan.empty += not plain.strip()
            yield plain
        else:
            raise DataError(f"the module gave a {type(ex).__name__}, not a Text, a Pair or a Chat")


class _Writer:
    """Appends one split's tokens (for pairs its row index, for chats its loss mask) to files, counting
    as it goes."""

    def __init__(self, out: Path, split: str, dtype: str, pairs: bool, masked: bool) -> None:
        self.path = out / f"{split}.bin"
        self.dtype = dtype
        self.tokens: IO[bytes] = self.path.open("wb")
        self.rows: IO[bytes] | None = (out / f"{split}.rows.bin").open("wb") if pairs else None
        self.mask: IO[bytes] | None = (out / f"{split}.mask.bin").open("wb") if masked else None
        self.num_tokens = 0
        self.num_examples = 0
        self.trained_tokens = 0
        self.example_tokens: array[int] = array("q")
        self.prompt_tokens: array[int] = array("q")
        # Per source (the file an example came from, where a module says): [examples, tokens].
        self.sources: dict[str, list[int]] = {}
        # Pairs rows with a mask: per block size, the targets that take loss in each row.
        self.learned_at: dict[int, array[int]] = (
            {b: array("q") for b in BLOCK_SIZES} if pairs and masked else {}
        )

    def write(self, ids: np.ndarray, trained: np.ndarray) -> None:
        self.tokens.write(ids.astype(self.dtype).tobytes())
        if self.mask is not None:
            self.mask.write(trained.astype(np.uint8).tobytes())
            self.trained_tokens += int(trained.sum())
        self.num_tokens += len(ids)

    def add_row(self, ids: np.ndarray, trained: np.ndarray, prompt_len: int) -> None:
        """One pairs row: ``prompt_len`` tokens of prompt, then what follows it."""
        assert self.rows is not None
        self.rows.write(np.array([self.num_tokens, prompt_len, len(ids)], dtype="<i8").tobytes())
        self.write(ids, trained)
        for block, learned in self.learned_at.items():
            learned.append(int(trained[1 : block + 1].sum()))
        self.example_tokens.append(len(ids))
        self.prompt_tokens.append(prompt_len)
        self.num_examples += 1

    def add_text(self, ids: np.ndarray, trained: np.ndarray, separator: np.ndarray | None) -> None:
        if separator is not None and self.num_tokens:
            self.write(separator, np.ones(len(separator), dtype=bool))
        self.write(ids, trained)
        self.example_tokens.append(len(ids))
        self.num_examples += 1

    def count_source(self, source: str, num_tokens: int) -> None:
        counts = self.sources.setdefault(source, [0, 0])
        counts[0] += 1
        counts[1] += num_tokens

    def close(self) -> None:
        self.tokens.close()
        for f in (self.rows, self.mask):
            if f:
                f.close()


def build(
    module: DataModule,
    path: Path | None,
    tokenizer_kind: str,
    packing: str,
    opts: Mapping[str, str],
    out: Path,
    corpus: Corpus | None = None,
) -> dict[str, Any]:
    """Write the dataset's files into ``out``; return what meta.json records about them. With a retrieval
    ``corpus``, each pairs row starts with passages retrieved for its prompt (``data_service.retrieval``)."""
    module_opts = {o.name: opts[o.name] for o in module.options}
    separator = opts["separator"]
    pairs = packing == "pairs"
    report, scan = Report(), Scan()
    learned = _scan(module.read(path, module_opts, report), scan, separator)
    text = itertools.chain(learned, tokenizer_text(corpus)) if corpus else learned
    specials = ([END] if pairs else []) + [
        s for s in module.special_tokens(path, module_opts) if s != END or not pairs
    ]
    tok = tokenizers.tokenizer_class(tokenizer_kind).train(text, specials, opts)
    for _ in text:  # a tokenizer that learns nothing (byte) leaves the scan to finish here
        pass
    examples = scan.texts + scan.pairs + scan.chats
    if examples == 0:
        raise DataError(f"{path or module.name} gave no examples")
    if pairs and scan.texts:
        raise DataError(
            f"packing 'pairs' needs prompt/completion examples, but {scan.texts} of the {examples} "
            f"examples from {path or module.name} are plain text; use packing 'stream'"
        )
    if corpus and scan.chats:
        raise DataError(
            f"option retrieval_corpus needs prompt/completion pairs, but {scan.chats} of the {examples} "
            f"examples from {path or module.name} are conversations"
        )
    masked = scan.chats > 0
    dtype = token_dtype(opts["token_dtype"], tok.vocab_size)
    in_val = choose_val(
        np.array(scan.keys, dtype=np.uint64),
        np.array(scan.sizes, dtype=np.int64),
        float(opts["val_fraction"]),
    )
    memory = None
    if "memory_examples" in opts:
        if scan.chats:
            raise DataError(
                f"option memory_examples needs prompt/completion pairs, but {scan.chats} of the {examples} "
                f"examples from {path or module.name} are conversations"
            )
        memory = Memory(int(opts["memory_examples"]), np.array([tok.special_id(END)], dtype=np.int64))
    context = None
    if corpus:
        examples_again = module.read(path, module_opts, Report())
        context = Contexts.build(corpus, examples_again, in_val, tok, opts, out / "retrieval")
    writers = {s: _Writer(out, s, dtype, pairs, masked) for s in SPLITS}
    try:
        _encode(
            module.read(path, module_opts, Report()), tok, writers, in_val, separator, pairs, context, memory
        )
    finally:
        for w in writers.values():
            w.close()
    if sum(w.num_examples for w in writers.values()) != len(in_val):
        raise DataError(f"module {module.name!r} gave different examples on a second read of {path}")
    contents = np.frombuffer(scan.contents, dtype=np.uint64)
    stats = dataset_stats(
        dtype, tok, writers, scan, contents, in_val, pairs, report, float(opts["val_fraction"])
    )
    if context:
        stats["retrieval"] = context.stats()
    if memory:
        stats["memory"] = memory.stats()
    return {
        "tokenizer": {"kind": tok.kind},
        "vocab_size": tok.vocab_size,
        "end_token": tok.special_id(END) if pairs else None,
        "dtype": dtype,
        "masked": masked,
        "splits": {
            s: {"num_tokens": w.num_tokens, "num_examples": w.num_examples} for s, w in writers.items()
        },
        "stats": stats,
        "warnings": dataset_warnings(stats, tok, writers, report),
        "tokenizer_state": tokenizers.save(tok),
    }


def _pieces(ex: Example, pairs: bool) -> list[tuple[str, bool]]:
    """The example's text in pieces encoded one by one, each with whether its tokens take loss."""
    if isinstance(ex, Chat):
        return [(s.text, s.trained) for s in ex.segments]
    if isinstance(ex, Pair):
        return [(ex.prompt, False), (ex.completion, True)] if pairs else [(ex.prompt + ex.completion, True)]
    return [(ex.text, True)]


def _encode(
    examples: Iterable[Example],
    tok: Tokenizer,
    writers: dict[str, _Writer],
    in_val: np.ndarray,
    separator: str,
    pairs: bool,
    context: Contexts | None = None,
    memory: Memory | None = None,
) -> None:
    sep = tok.encode(separator)
    end = np.array([tok.special_id(END)] if pairs else [], dtype=np.int64)
    index = 0
    stream = iter(examples)
    while batch := list(itertools.islice(stream, ENCODE_BATCH)):
        if index + len(batch) > len(in_val):
            raise DataError("the module gave more examples on its second read than on its first")
        pieces = [_pieces(ex, pairs) for ex in batch]
        encoded = iter(tok.encode_batch([text for p in pieces for text, _ in p]))
        vals = in_val[index : index + len(batch)]
        heads: list[np.ndarray | None] = list(context.heads(batch, vals)) if context else [None] * len(batch)
        for val, ex, parts, head in zip(vals, batch, pieces, heads, strict=True):
            ids = [next(encoded) for _ in parts]
            trained = [np.full(len(i), t, dtype=bool) for i, (_, t) in zip(ids, parts, strict=True)]
            past = memory.before(ex, val, ids) if memory and isinstance(ex, Pair) else None
            if head is not None:  # retrieved passages before the prompt: read, never trained on
                ids.insert(0, head)
                trained.insert(0, np.zeros(len(head), dtype=bool))
            if past is not None:  # the examples before it in its document and split: read, never trained on
                ids.insert(0, past)
                trained.insert(0, np.zeros(len(past), dtype=bool))
            writer = writers["val" if val else "train"]
            writer.count_source(ex.source, sum(len(i) for i in ids) + (isinstance(ex, Pair) and pairs))
            if pairs:
                if isinstance(ex, Pair):  # prompt, completion, then the end token, which takes loss
                    ids.append(end)
                    trained.append(np.ones(1, dtype=bool))
                tokens, mask = np.concatenate(ids), np.concatenate(trained)
                writer.add_row(tokens, mask, _untrained_head(mask))
            else:
                new_doc = not isinstance(ex, Text) or ex.new_doc
                separated = new_doc and not isinstance(ex, Chat)  # a chat ends in its own end token
                writer.add_text(np.concatenate(ids), np.concatenate(trained), sep if separated else None)
        index += len(batch)


def _untrained_head(mask: np.ndarray) -> int:
    """How many tokens come before the first that takes loss (all of them if none does)."""
    return int(np.argmax(mask)) if mask.any() else len(mask)
