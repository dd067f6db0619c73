"""The BM25 index over a corpus's passages, built once at prepare time and kept in the dataset's folder.

``<dataset>/retrieval/`` holds ``bm25/`` (the index, as ``bm25s`` saves it), ``passages.txt`` (the
indexed passages' UTF-8 text, back to back), ``offsets.npy`` (int64: passage i is bytes
``offsets[i]:offsets[i+1]``) and ``from_val.npy`` (bool: the passage holds a val example's prompt and
answer; only ever true when ``exclude_val_passages`` is false). Passages are streamed to the file and
indexed as arrays of word ids, so a corpus is never held as Python strings.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from pathlib import Path

import bm25s
import numpy as np

from data_service.retrieval.leaks import ValPairs, words


class PassageIndex:
    """Search the indexed passages by BM25 and read them back from the folder."""

    def __init__(
        self, folder: Path, retriever: bm25s.BM25 | None, vocab: dict[str, int], val_passages: int | None
    ) -> None:
        self.folder = folder
        # Passages found built from val data, whether left out of the index or not (None: opened from the
        # folder, which keeps only those left in).
        self.val_passages = val_passages
        self._retriever = retriever
        self._vocab = vocab
        self.offsets = np.load(folder / "offsets.npy")
        self.from_val = np.load(folder / "from_val.npy")
        self._text = np.memmap(folder / "passages.txt", dtype=np.uint8, mode="r") if len(self) else None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def build(cls, passages: Iterable[str], val: ValPairs, exclude_val: bool, folder: Path) -> PassageIndex:
        """Index ``passages`` into ``folder``; those built from val data are counted, and left out when
        ``exclude_val``."""
        folder.mkdir(parents=True, exist_ok=True)
        vocab: dict[str, int] = {}
        docs: list[array[int]] = []
        offsets, from_val = array("q", [0]), array("b")
        val_passages = 0
        with (folder / "passages.txt").open("wb") as f:
            for passage in passages:
                passage_words = words(passage)
                is_val = val.built_from_val(passage_words)
                val_passages += is_val
                if is_val and exclude_val:
                    continue
                raw = passage.encode("utf-8")
                f.write(raw)
                offsets.append(offsets[-1] + len(raw))
                from_val.append(is_val)
                docs.append(array("I", (vocab.setdefault(w, len(vocab)) for w in passage_words)))
        np.save(folder / "offsets.npy", np.frombuffer(offsets, dtype=np.int64))
        np.save(folder / "from_val.npy", np.frombuffer(from_val, dtype=np.int8).astype(bool))
        retriever = None
        if docs:
            retriever = bm25s.BM25()
            # Ids, not word lists: bm25s would hold every word of the corpus as its own string.
            retriever.index((docs, vocab), create_empty_token=False, show_progress=False)
            retriever.save(folder / "bm25", show_progress=False)
        return cls(folder, retriever, vocab, val_passages)

    @classmethod
    def open(cls, folder: Path) -> PassageIndex:
        """The index ``build`` left in ``folder``, memory-mapped, to search for prompts after prepare."""
        if not (folder / "bm25").is_dir():
            return cls(folder, None, {}, None)
        retriever = bm25s.BM25.load(folder / "bm25", mmap=True)
        return cls(folder, retriever, retriever.vocab_dict, None)

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        """The passages (by number) that score best for each query, best first: at most ``k``, none that
        shares no word with it."""
        found: list[list[int]] = [[] for _ in queries]
        ids = [[self._vocab[w] for w in words(q) if w in self._vocab] for q in queries]
        asked = [i for i, query in enumerate(ids) if query]
        if self._retriever is None or not asked:
            return found
        docs, scores = self._retriever.retrieve(
            [ids[i] for i in asked], k=min(k, len(self)), show_progress=False, return_as="tuple"
        )
        for row, i in enumerate(asked):
            found[i] = [int(d) for d, s in zip(docs[row], scores[row], strict=True) if s > 0]
        return found

    def passage(self, number: int) -> str:
        assert self._text is not None
        return bytes(self._text[self.offsets[number] : self.offsets[number + 1]]).decode("utf-8")
