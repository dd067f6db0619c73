"""Prepared datasets on disk: ``<prepared_dir>/<id>/{train.bin, val.bin, meta.json}``.

The id hashes the source bytes with the canonical preparation options, so preparing the same thing
twice finds the first result. A dataset is written into a temporary directory and renamed into place,
so a crash never leaves half of one behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_service import tokenizers
from data_service.errors import DataError, NotFoundError
from data_service.modules.base import DataModule, Option, resolve_source
from data_service.tokenizers.char import CharTokenizer

# Bump when the on-disk layout or the preparation changes, so old ids are not reused for new bytes.
FORMAT = 1
SPLITS = ("train", "val")
PACKINGS = ("stream",)
# A split shorter than one window of this block size (plus its target) gets a warning.
TYPICAL_BLOCK_SIZE = 256
# Options every module takes, on top of its own.
OPTIONS = (
    Option("val_fraction", "Share of the tokens, taken from the end, held out for validation.", "0.1"),
)
_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Dataset:
    path: Path
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.meta["id"]

    def tokens(self, split: str) -> np.ndarray:
        """The split's token ids, memory-mapped (read-only)."""
        count = self.meta["splits"][split]["num_tokens"]
        if count == 0:  # mmap refuses empty files
            return np.zeros(0, dtype=self.meta["dtype"])
        return np.memmap(self.path / f"{split}.bin", dtype=self.meta["dtype"], mode="r", shape=(count,))

    def tokenizer(self) -> CharTokenizer:
        return tokenizers.load(self.meta["tokenizer"])


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, dataset_id: str) -> Dataset:
        path = self.root / dataset_id
        if not _ID.fullmatch(dataset_id) or not (path / "meta.json").is_file():
            raise NotFoundError(f"dataset {dataset_id!r} not found; PrepareDataset creates it")
        return Dataset(path, json.loads((path / "meta.json").read_text(encoding="utf-8")))

    def prepare(
        self,
        module: DataModule,
        data_root: Path,
        source: str,
        tokenizer: str = "char",
        packing: str = "stream",
        options: Mapping[str, str] | None = None,
    ) -> Dataset:
        """The dataset for ``source`` read by ``module``: found if prepared before, else built and saved."""
        tokenizer_cls = tokenizers.tokenizer_class(tokenizer)
        if packing not in PACKINGS:
            raise DataError(f"unknown packing {packing!r}; supported: {', '.join(PACKINGS)}")
        opts = canonical_options(module, options or {})
        path = resolve_source(data_root, source)
        docs = module.read(path, {o.name: opts[o.name] for o in module.options})
        recipe = {"format": FORMAT, "module": module.name, "tokenizer": tokenizer, "packing": packing}
        key = json.dumps({**recipe, "options": opts}, sort_keys=True)
        dataset_id = hashlib.sha256(f"{module.fingerprint(path)}\n{key}".encode()).hexdigest()[:16]
        if (self.root / dataset_id / "meta.json").is_file():
            return self.get(dataset_id)

        tok = tokenizer_cls.train("\n".join(docs))
        tokens, doc_starts = pack_stream(docs, tok)
        num_val = round(len(tokens) * float(opts["val_fraction"]))
        split_at = len(tokens) - num_val
        parts = {"train": tokens[:split_at], "val": tokens[split_at:]}
        dtype = "uint16" if tok.vocab_size <= 2**16 else "int32"
        stats = _stats(parts, tok, len(docs))
        meta = {
            **recipe,
            "id": dataset_id,
            "source": source,
            "tokenizer": tokenizers.save(tok),
            "options": opts,
            "vocab_size": tok.vocab_size,
            "dtype": dtype,
            "splits": {
                "train": {"num_tokens": split_at, "num_examples": int(np.sum(doc_starts < split_at))},
                "val": {"num_tokens": num_val, "num_examples": int(np.sum(doc_starts >= split_at))},
            },
            "stats": stats,
            "warnings": _warnings(parts, tok),
        }
        files = {f"{s}.bin": parts[s].astype(dtype).tobytes() for s in SPLITS}
        files["meta.json"] = (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode()
        self._write(dataset_id, files)
        return self.get(dataset_id)

    def _write(self, dataset_id: str, files: dict[str, bytes]) -> None:
        """Write all files into a temporary directory, then rename it into place in one step."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dataset_id}-", dir=self.root))
        try:
            for name, data in files.items():
                with (tmp / name).open("wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            try:
                tmp.rename(self.root / dataset_id)
            except OSError:
                # A concurrent prepare of the same dataset won the race; its result is identical.
                if not (self.root / dataset_id / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def canonical_options(module: DataModule, given: Mapping[str, str]) -> dict[str, str]:
    """Every option the module takes, with defaults filled in and values normalised.

    So equal requests hash equal; an unknown name is an error, not a silently ignored typo.
    """
    known = {o.name: o for o in (*OPTIONS, *module.options)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for module {module.name!r}; it takes: {', '.join(known)}"
        )
    opts = {name: given.get(name, o.default) for name, o in known.items()}
    try:
        fraction = float(opts["val_fraction"])
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction < 1:
        raise DataError(f"option val_fraction must be a number in [0, 1), got {opts['val_fraction']!r}")
    opts["val_fraction"] = repr(fraction)
    return opts


def pack_stream(docs: list[str], tok: CharTokenizer) -> tuple[np.ndarray, np.ndarray]:
    """All documents as one token stream, joined by newlines, and where each document starts in it."""
    sep = tok.encode("\n") if len(docs) > 1 else np.zeros(0, dtype=np.int64)
    pieces: list[np.ndarray] = []
    starts: list[int] = []
    at = 0
    for i, doc in enumerate(docs):
        if i:
            pieces.append(sep)
            at += len(sep)
        starts.append(at)
        pieces.append(tok.encode(doc))
        at += len(pieces[-1])
    return np.concatenate(pieces), np.array(starts, dtype=np.int64)


def _stats(parts: dict[str, np.ndarray], tok: CharTokenizer, num_docs: int) -> dict[str, Any]:
    return {
        "num_documents": num_docs,
        "vocab_size": tok.vocab_size,
        "num_chars": {s: len(tok.decode(parts[s])) for s in SPLITS},
        "num_tokens": {s: len(parts[s]) for s in SPLITS},
        "val_tokens_unseen_in_train": len(np.setdiff1d(parts["val"], parts["train"])),
    }


def _warnings(parts: dict[str, np.ndarray], tok: CharTokenizer) -> list[str]:
    """Problems a person should know before training, one sentence each."""
    warnings = []
    for split in SPLITS:
        n = len(parts[split])
        if n == 0:
            warnings.append(f"The {split} split is empty, so nothing can be sampled from it.")
        elif n <= TYPICAL_BLOCK_SIZE:
            warnings.append(
                f"The {split} split has only {n} tokens, too few for a block_size of {TYPICAL_BLOCK_SIZE}: "
                f"use block_size below {n} or more data."
            )
    unseen = np.setdiff1d(parts["val"], parts["train"])
    if len(unseen):
        warnings.append(
            f"{len(unseen)} distinct tokens of the val split never occur in train "
            f"(e.g. {tok.decode(unseen[:5])!r}), so the model cannot learn them."
        )
    return warnings
