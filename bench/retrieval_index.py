"""Benchmark retrieval at prepare time on a generated ~20 MB corpus: the BM25 index's build time, query
throughput and peak RSS, and a pairs dataset prepared with the corpus beside the same pairs without it.

Each measurement runs in a fresh process (this script again, with ``--child``), so its peak RSS is its
own.

    .venv/bin/python bench/retrieval_index.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from data_common import write_corpus  # noqa: E402

from data_service.modules import discover  # noqa: E402
from data_service.prepare import ENCODE_BATCH  # noqa: E402
from data_service.retrieval.corpus import resolve_corpus  # noqa: E402
from data_service.retrieval.index import PassageIndex  # noqa: E402
from data_service.retrieval.leaks import ValPairs  # noqa: E402
from data_service.store import Store  # noqa: E402

SIZE = 20 << 20
PAIRS = 20_000
RETRIEVAL = {"retrieval_corpus": "corpus.txt", "retrieve_k": "3", "context_tokens": "256"}


def peak_rss_mb() -> float:
    """This process's own peak RSS (``ru_maxrss`` would carry the parent's over exec on Linux)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def index_child(root: Path, out: Path) -> dict:
    """Build the index alone, then search it with every prompt, ENCODE_BATCH at a time as prepare does."""
    module = discover()["jsonl"]
    opts = {**{o.name: o.default for o in module.options}, "retrieval_corpus": "corpus.txt"}
    corpus = resolve_corpus(module, root, opts, "pairs")
    assert corpus is not None
    start = time.perf_counter()
    index = PassageIndex.build(corpus.passages(), ValPairs([]), True, out)
    built = time.perf_counter() - start
    with (root / "qa.jsonl").open(encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f]
    start = time.perf_counter()
    for i in range(0, len(prompts), ENCODE_BATCH):
        index.search(prompts[i : i + ENCODE_BATCH], 3)
    searched = time.perf_counter() - start
    return {
        "passages": len(index),
        "build_seconds": built,
        "queries": len(prompts),
        "queries_per_s": len(prompts) / searched,
        "peak_rss_mb": peak_rss_mb(),
    }


def prepare_child(root: Path, out: Path, options: dict[str, str]) -> dict:
    start = time.perf_counter()
    ds = Store(out).prepare(discover()["jsonl"], root, "qa.jsonl", packing="pairs", options=options)
    return {
        "seconds": time.perf_counter() - start,
        "tokens": sum(s["num_tokens"] for s in ds.meta["splits"].values()),
        "retrieval": ds.meta["stats"].get("retrieval"),
        "peak_rss_mb": peak_rss_mb(),
    }


def in_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def write_pairs(corpus: Path, path: Path, n: int, every: int) -> None:
    """Questions about the corpus: the first line of every ``every``-th paragraph, its opening words as
    the prompt and the next three as the answer; streamed, so this process stays small."""
    written, paragraph, after_blank = 0, 0, True
    with corpus.open(encoding="utf-8") as lines, path.open("w", encoding="utf-8") as f:
        for line in lines:
            if after_blank and line.strip() and written < n:
                if paragraph % every == 0:
                    words = line.split()
                    prompt = f"What comes after: {' '.join(words[:8])}?"
                    f.write(json.dumps({"prompt": prompt, "completion": " " + " ".join(words[8:11])}) + "\n")
                    written += 1
                paragraph += 1
            after_blank = not line.strip()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        size = write_corpus(root / "corpus.txt", SIZE).stat().st_size  # paragraphs of five sentences
        write_pairs(root / "corpus.txt", root / "qa.jsonl", PAIRS, every=3)
        index = in_child("index", str(root), str(Path(tmp) / "index"))
        plain = in_child("prepare", str(root), str(Path(tmp) / "plain"), "{}")
        augmented = in_child("prepare", str(root), str(Path(tmp) / "augmented"), json.dumps(RETRIEVAL))
    plain.pop("retrieval")
    stats = augmented.pop("retrieval")
    kept = ("passages", "supported", "context_tokens_retrieved", "context_tokens_kept")
    report = {
        "bench": "retrieval_index",
        "corpus_mb": size / 1e6,
        "pairs": PAIRS,
        "index": index,
        "prepare_plain": plain,
        "prepare_with_retrieval": augmented | {k: stats[k] for k in kept},
        "ratios": {
            "seconds": augmented["seconds"] / plain["seconds"],
            "peak_rss": augmented["peak_rss_mb"] / plain["peak_rss_mb"],
            "tokens": augmented["tokens"] / plain["tokens"],
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        what, root, out, *rest = sys.argv[2:]
        if what == "index":
            result = index_child(Path(root), Path(out))
        else:
            result = prepare_child(Path(root), Path(out), json.loads(rest[0]))
        print(json.dumps(result))
    else:
        main()
