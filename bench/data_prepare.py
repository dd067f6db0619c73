"""Benchmark preparing about 20 MB of text: MB/s with the BPE tokenizer (and char and byte beside it).

.venv/bin/python bench/data_prepare.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from data_common import write_corpus  # noqa: E402

from data_service.modules import discover  # noqa: E402
from data_service.store import Store  # noqa: E402

SIZE = 20 << 20


def main() -> None:
    text = discover()["text"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        size = write_corpus(root / "data" / "corpus.txt", SIZE).stat().st_size
        for tokenizer, options in (("bpe", {"vocab_size": "4096"}), ("char", {}), ("byte", {})):
            store = Store(root / f"prepared-{tokenizer}")
            start = time.perf_counter()
            ds = store.prepare(text, root / "data", "corpus.txt", tokenizer=tokenizer, options=options)
            elapsed = time.perf_counter() - start
            tokens = sum(s["num_tokens"] for s in ds.meta["splits"].values())
            results[tokenizer] = {
                "seconds": elapsed,
                "mb_per_s": size / elapsed / 1e6,
                "tokens": tokens,
                "vocab_size": ds.meta["vocab_size"],
                "tokens_per_byte": tokens / size,
            }
    print(json.dumps({"bench": "data_prepare", "source_mb": size / 1e6, "tokenizers": results}, indent=2))


if __name__ == "__main__":
    main()
