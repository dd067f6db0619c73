"""Building a prepared dataset in two streaming passes over the module's examples.

Pass 1 trains the tokenizer and records a hash and a size per example, enough to choose the split.
Pass 2 encodes each example and appends its tokens to its split's file. Neither pass holds the
source's text or tokens whole, so a source far bigger than memory prepares in bounded memory.

On disk, per split: ``<split>.bin`` (the token ids); for ``pairs`` packing also ``<split>.rows.bin``,
int64 rows of (start, prompt length, total length), each example's tokens being prompt, completion,
then the end token.
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
from data_service.errors import DataError
from data_service.modules.base import DataModule, Example, Pair, Report, Text
from data_service.options import token_dtype
from data_service.split import choose_val, key_hash
from data_service.stats import dataset_stats, dataset_warnings
from data_service.tokenizers.base import Tokenizer

SPLITS = ("train", "val")
END = "<|endoftext|>"
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
        else:
            raise DataError(f"the module gave a {type(ex).__name__}, not a Text or a Pair")


class _Writer:
    """Appends one split's tokens (and for pairs its row index) to files, counting as it goes."""

    def __init__(self, out: Path, split: str, dtype: str, pairs: bool) -> None:
        self.path = out / f"{split}.bin"
        self.dtype = dtype
        self.tokens: IO[bytes] = self.path.open("wb")
        self.rows: IO[bytes] | None = (out / f"{split}.rows.bin").open("wb") if pairs else None
        self.num_tokens = 0
        self.num_examples = 0
        self.example_tokens: array[int] = array("q")
        self.prompt_tokens: array[int] = array("q")

    def write(self, ids: np.ndarray) -> None:
        self.tokens.write(ids.astype(self.dtype).tobytes())
        self.num_tokens += len(ids)

    def add_pair(self, prompt: np.ndarray, completion: np.ndarray, end: int) -> None:
        assert self.rows is not None
        ids = np.concatenate([prompt, completion, [end]])
        self.rows.write(np.array([self.num_tokens, len(prompt), len(ids)], dtype="<i8").tobytes())
        self.write(ids)
        self.example_tokens.append(len(ids))
        self.prompt_tokens.append(len(prompt))
        self.num_examples += 1

    def add_text(self, ids: np.ndarray, separator: np.ndarray | None) -> None:
        if separator is not None and self.num_tokens:
            self.write(separator)
        self.write(ids)
        self.example_tokens.append(len(ids))
        self.num_examples += 1

    def close(self) -> None:
        self.tokens.close()
        if self.rows:
            self.rows.close()


def build(
    module: DataModule,
    path: Path | None,
    tokenizer_kind: str,
    packing: str,
    opts: Mapping[str, str],
    out: Path,
) -> dict[str, Any]:
    """Write the dataset's files into ``out``; return what meta.json records about them."""
    module_opts = {o.name: opts[o.name] for o in module.options}
    separator = opts["separator"]
    pairs = packing == "pairs"
    report, scan = Report(), Scan()
    text = _scan(module.read(path, module_opts, report), scan, separator)
    tok = tokenizers.tokenizer_class(tokenizer_kind).train(text, [END] if pairs else [], opts)
    for _ in text:  # a tokenizer that learns nothing (byte) leaves the scan to finish here
        pass
    if scan.texts + scan.pairs == 0:
        raise DataError(f"{path or module.name} gave no examples")
    if pairs and scan.texts:
        raise DataError(
            f"packing 'pairs' needs prompt/completion examples, but {scan.texts} of the "
            f"{scan.texts + scan.pairs} examples from {path or module.name} are plain text; "
            "use packing 'stream'"
        )
    dtype = token_dtype(opts["token_dtype"], tok.vocab_size)
    in_val = choose_val(
        np.array(scan.keys, dtype=np.uint64),
        np.array(scan.sizes, dtype=np.int64),
        float(opts["val_fraction"]),
    )
    writers = {s: _Writer(out, s, dtype, pairs) for s in SPLITS}
    try:
        _encode(module.read(path, module_opts, Report()), tok, writers, in_val, separator)
    finally:
        for w in writers.values():
            w.close()
    if sum(w.num_examples for w in writers.values()) != len(in_val):
        raise DataError(f"module {module.name!r} gave different examples on a second read of {path}")
    contents = np.frombuffer(scan.contents, dtype=np.uint64)
    stats = dataset_stats(
        dtype, tok, writers, scan, contents, in_val, pairs, report, float(opts["val_fraction"])
    )
    return {
        "tokenizer": {"kind": tok.kind},
        "vocab_size": tok.vocab_size,
        "end_token": tok.special_id(END) if pairs else None,
        "dtype": dtype,
        "splits": {
            s: {"num_tokens": w.num_tokens, "num_examples": w.num_examples} for s, w in writers.items()
        },
        "stats": stats,
        "warnings": dataset_warnings(stats, tok, writers, report),
        "tokenizer_state": tokenizers.save(tok),
    }


def _encode(
    examples: Iterable[Example],
    tok: Tokenizer,
    writers: dict[str, _Writer],
    in_val: np.ndarray,
    separator: str,
) -> None:
    sep = tok.encode(separator)
    index = 0
    stream = iter(examples)
    while batch := list(itertools.islice(stream, ENCODE_BATCH)):
        if index + len(batch) > len(in_val):
            raise DataError("the module gave more examples on its second read than on its first")
        sides = in_val[index : index + len(batch)]
        if isinstance(batch[0], Pair) and writers["train"].rows is not None:
            prompts = tok.encode_batch([ex.prompt for ex in batch])  # type: ignore[union-attr]
            completions = tok.encode_batch([ex.completion for ex in batch])  # type: ignore[union-attr]
            end = tok.special_id(END)
            for val, p, c in zip(sides, prompts, completions, strict=True):
                writers["val" if val else "train"].add_pair(p, c, end)
        else:
            texts = [ex.prompt + ex.completion if isinstance(ex, Pair) else ex.text for ex in batch]
            new_docs = [isinstance(ex, Pair) or ex.new_doc for ex in batch]
            for val, ids, new_doc in zip(sides, tok.encode_batch(texts), new_docs, strict=True):
                writers["val" if val else "train"].add_text(ids, sep if new_doc else None)
        index += len(batch)
