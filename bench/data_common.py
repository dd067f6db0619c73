"""Helpers the data benchmarks share: a generated corpus, a data service child process, peak memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SYLLABLES = "ka lo mi ru te sa no fi da ve po xu li ba ne to gu re si mo ha ju ze qi".split()


def words(n: int, seed: int) -> list[str]:
    """A made-up vocabulary with a long tail, like a language's."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))) for _ in range(n)]


def write_corpus(path: Path, size_bytes: int, seed: int = 0) -> Path:
    """Generated prose of about ``size_bytes``: Zipf-distributed words, sentences, paragraphs."""
    rng = np.random.default_rng(seed)
    vocab = np.array(words(5000, seed))
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    written = 0
    with path.open("w", encoding="utf-8") as f:
        while written < size_bytes:
            chunk = vocab[rng.choice(len(vocab), size=200_000, p=weights)]
            lines = [" ".join(chunk[i : i + 14]) + "." for i in range(0, len(chunk), 14)]
            text = "\n".join(" ".join(lines[i : i + 5]) + "\n" for i in range(0, len(lines), 5))
            f.write(text)
            written += len(text)
    return path


def start_data_service(data_root: Path, state_dir: Path) -> tuple[subprocess.Popen, str]:
    """``python -m data_service`` on a free loopback port; returns the process and its address."""
    env = os.environ | {
        "SIMTRAIN_DATA_ROOT": str(data_root),
        "SIMTRAIN_STATE_DIR": str(state_dir),
        "SIMTRAIN_DATA_SERVICE_PORT": "0",
        "PYTHONPATH": str(REPO),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "data_service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = child.stdout.readline()  # type: ignore[union-attr]
    match = re.search(r"listening on (\S+)", line)
    if not match:
        child.kill()
        raise RuntimeError(f"data service did not start: {line!r}")
    return child, match.group(1)


def memory_mb(pid: int) -> dict[str, float]:
    """Peak and current RSS of a live process, with the current split into anonymous and file pages."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return {
        "peak_rss_mb": fields["VmHWM"],
        "rss_mb": fields["VmRSS"],
        "rss_anon_mb": fields["RssAnon"],
        "rss_file_mb": fields["RssFile"],
    }
