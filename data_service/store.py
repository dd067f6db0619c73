"""Prepared datasets on disk: ``<prepared_dir>/<id>/`` with ``meta.json``, ``tokenizer.json`` and, per
split, memory-mapped token files (see ``prepare`` for the layout).

The id hashes the source content with the canonical preparation recipe, so preparing the same thing
twice finds the first result. A dataset is written into a temporary directory and renamed into place,
so a crash never leaves half of one behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from data_service import tokenizers
from data_service.errors import DataError, NotFoundError, PreconditionError, blame
from data_service.memory import check_packing
from data_service.modules.base import DataModule, resolve_source
from data_service.options import PACKINGS, canonical_options
from data_service.prepare import SPLITS, build
from data_service.retrieval.context import Retriever
from data_service.retrieval.corpus import Corpus, resolve_corpus
from data_service.retrieval.index import PassageIndex
from data_service.tokenizers.base import Tokenizer

# Bump when the on-disk layout or the preparation changes, so old ids are not reused for new bytes.
# 4: per-token loss masks (``<split>.mask.bin``) for datasets with chats, and the chat template.
FORMAT = 4
_ID = re.compile(r"[0-9a-f]{16}")

log = logging.getLogger(__name__)


class Dataset:
    """One prepared dataset: its metadata, and its tokens memory-mapped (never loaded whole)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        self._tokenizer: Tokenizer | None = None
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def packing(self) -> str:
        return self.meta["packing"]

    def tokens(self, split: str) -> np.ndarray:
        """The split's token ids, memory-mapped (read-only)."""
        count = self.meta["splits"][split]["num_tokens"]
        if count == 0:  # mmap refuses empty files
            return np.zeros(0, dtype=self.meta["dtype"])
        return np.memmap(self.path / f"{split}.bin", dtype=self.meta["dtype"], mode="r", shape=(count,))

    def rows(self, split: str) -> np.ndarray:
        """For pairs packing: int64 [num_examples, 3] of (start, prompt length, total length)."""
        count = self.meta["splits"][split]["num_examples"]
        if count == 0:
            return np.zeros((0, 3), dtype=np.int64)
        return np.memmap(self.path / f"{split}.rows.bin", dtype="<i8", mode="r", shape=(count, 3))

    def mask(self, split: str) -> np.ndarray | None:
        """For datasets with chats: uint8 per token, 1 where loss is taken on it as a target; else None."""
        if not self.meta.get("masked"):
            return None
        count = self.meta["splits"][split]["num_tokens"]
        if count == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(self.path / f"{split}.mask.bin", dtype=np.uint8, mode="r", shape=(count,))

    def tokenizer(self) -> Tokenizer:
        with self._lock:
            if self._tokenizer is None:
                saved = json.loads((self.path / "tokenizer.json").read_text(encoding="utf-8"))
                self._tokenizer = tokenizers.load(saved)
            return self._tokenizer

    def retriever(self) -> Retriever:
        """What finds a prompt's context in the index prepared with the dataset, as its rows got theirs."""
        retrieval = self.meta.get("stats", {}).get("retrieval")
        if retrieval is None:
            raise PreconditionError(
                f"dataset {self.id} was prepared without a retrieval corpus: its rows have no context to "
                "find (prepare it with the option retrieval_corpus)"
            )
        tok = self.tokenizer()
        with self._lock:
            if self._retriever is None:
                index = PassageIndex.open(self.path / "retrieval")
                self._retriever = Retriever(index, tok, retrieval["retrieve_k"], retrieval["context_tokens"])
            return self._retriever


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, dataset_id: str) -> Dataset:
        path = self.root / dataset_id
        if not _ID.fullmatch(dataset_id) or not (path / "meta.json").is_file():
            raise NotFoundError(f"dataset {dataset_id!r} not found: prepare it first")
        return _load(path, (path / "meta.json").stat().st_mtime_ns)

    def list(self) -> list[Dataset]:
        """Every prepared dataset, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for p in self.root.iterdir():
            if not (_ID.fullmatch(p.name) and (p / "meta.json").is_file()):
                continue
            try:
                found.append(self.get(p.name))
            except (OSError, ValueError):  # one unreadable dataset must not hide the others
                log.warning("prepared dataset %s is unreadable; not listed", p, exc_info=True)
        return sorted(found, key=lambda d: (d.meta.get("created_at", 0), d.id))

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
        opts, path, corpus = check_request(module, data_root, source, tokenizer, packing, options or {})
        recipe = {"format": FORMAT, "module": module.name, "tokenizer": tokenizer, "packing": packing}
        key = json.dumps({**recipe, "options": opts}, sort_keys=True)
        if corpus:  # a changed corpus is a new dataset; without one the id stays as it always was
            key += f"\nretrieval_corpus:{corpus.fingerprint()}"
        dataset_id = hashlib.sha256(f"{module.fingerprint(path)}\n{key}".encode()).hexdigest()[:16]
        if (self.root / dataset_id / "meta.json").is_file():
            return self.get(dataset_id)

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dataset_id}-", dir=self.root))
        try:
            built = build(module, path, tokenizer, packing, opts, tmp, corpus)
            saved_tokenizer = built.pop("tokenizer_state")
            meta = {
                **recipe,
                "id": dataset_id,
                "source": source,
                "options": opts,
                "created_at": time.time(),
                **built,
            }
            _write_json(tmp / "tokenizer.json", saved_tokenizer)
            _write_json(tmp / "meta.json", meta)
            for file in tmp.rglob("*"):
                if file.is_file():
                    with file.open("rb") as f:
                        os.fsync(f.fileno())
            try:
                tmp.rename(self.root / dataset_id)
            except OSError:
                # A concurrent prepare of the same dataset won the race; its result is identical.
                if not (self.root / dataset_id / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.get(dataset_id)


def check_request(
    module: DataModule,
    data_root: Path,
    source: str,
    tokenizer: str,
    packing: str,
    options: Mapping[str, str],
) -> tuple[dict[str, str], Path | None, Corpus | None]:
    """What preparing needs of a request (canonical options, the source's path, the retrieval corpus),
    checked before any work: a DataError whose ``field`` names the request field at fault otherwise."""
    with blame("tokenizer"):
        tokenizers.tokenizer_class(tokenizer)
    with blame("options"):
        opts = canonical_options(module, tokenizer, options)
    if packing not in PACKINGS:
        raise DataError(f"unknown packing {packing!r}; supported: {', '.join(PACKINGS)}", "packing")
    with blame("options"):
        corpus = resolve_corpus(module, data_root, opts, packing)
        check_packing(opts, packing)
    with blame("source"):
        if module.needs_source:
            return opts, resolve_source(data_root, source), corpus
        if not source:
            raise DataError(f"source is empty: module {module.name!r} needs none, but give it a name")
    return opts, None, corpus


@functools.lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> Dataset:
    """Datasets never change once written, so one Dataset (and its tokenizer) serves every request."""
    return Dataset(path, json.loads((path / "meta.json").read_text(encoding="utf-8")))


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


__all__ = ["SPLITS", "Dataset", "Store"]
