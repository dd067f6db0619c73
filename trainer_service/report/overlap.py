"""How much of the val split the model has already seen in training, measured from the batches themselves.

The data service's split is leak-free for exact duplicates, but near-duplicates (the same card typed twice,
a trailing space apart) and a data service that serves train as val slip past it. So the trainer hashes
what it trains on: n-grams of ``n`` tokens for stream packing, whole examples for pairs. A fixed 1/8 of
hash values is kept, chosen by value, so the same content is always kept or always dropped.

The share of val hashes found among those seen in training is then compared with the same share for
fresh train windows (drawn with another seed): val that is really held out is less familiar than more
train text is, while val copied from train is exactly as familiar. Their ratio is near 1 for a copy,
and the comparison holds whatever fraction of train the run happened to see.
"""

from __future__ import annotations

from typing import Any

import torch

from trainer_service.report.batch_checks import last_real

KEEP_ONE_IN = 8
MAX_SEEN = 1 << 19  # hashes kept from training (4 MiB); later batches are not added
MAX_PROBES = 1 << 16
MIN_PROBES = 50  # fewer probes than this, or few baseline hits, and the ratio says nothing
MIN_BASELINE_HITS = 0.05
_WEIGHTS_SEED = 20240611


class Overlap:
    """Seen hashes from training, and probes of val and of fresh train batches."""

    def __init__(self, ngram: int, pairs: bool, block_size: int) -> None:
        self.pairs = pairs
        self.n = min(ngram, block_size)
        g = torch.Generator().manual_seed(_WEIGHTS_SEED)
        self._weights = torch.randint(1, 2**62, (block_size + 1,), generator=g, dtype=torch.int64)
        self._seen: list[torch.Tensor] = []
        self._seen_count = 0
        self._probes: dict[str, list[torch.Tensor]] = {"val": [], "fresh": []}

    def hashes(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The kept hashes of a batch: n-gram windows of x (stream), or one per example row (pairs)."""
        x = x.to(torch.int64)
        if self.pairs:
            T = x.size(1)
            last = last_real(y != -1)
            inside = torch.arange(T) <= last.unsqueeze(1)
            seq = torch.where(inside, x + 1, 0)  # 0 past the example, so padding never counts
            end = y.gather(1, last.clamp(min=0).unsqueeze(1)).squeeze(1) + 1
            h = (seq * self._weights[:T]).sum(1) + end * self._weights[T]
            return h[last >= 0]  # rows with no target at all are not examples
        windows = x.unfold(1, self.n, 1)  # [B, T - n + 1, n]
        h = (windows * self._weights[: self.n]).sum(-1).flatten()
        return h[(h >> 7) % KEEP_ONE_IN == 0]

    def add_seen(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self._seen_count < MAX_SEEN:
            h = self.hashes(x, y)
            self._seen.append(h)
            self._seen_count += len(h)

    def add_probe(self, kind: str, x: torch.Tensor, y: torch.Tensor) -> None:
        """``kind``: "val" (held out) or "fresh" (train windows drawn with another seed)."""
        if self._probe_count(kind) < MAX_PROBES:
            self._probes[kind].append(self.hashes(x, y))

    def has_val_probes(self) -> bool:
        return bool(self._probes["val"])

    def enough_probes(self, kind: str) -> bool:
        return self._probe_count(kind) >= MIN_PROBES

    def enough_seen(self) -> bool:
        """Whether fresh train probes hit the seen hashes often enough to be a baseline (or nothing more
        can be added)."""
        hits = self._hits("fresh", _cat(self._seen))
        return self._seen_count >= MAX_SEEN or (hits is not None and hits >= MIN_BASELINE_HITS)

    def _probe_count(self, kind: str) -> int:
        return sum(len(p) for p in self._probes[kind])

    def _hits(self, kind: str, seen: torch.Tensor) -> float | None:
        """The share of ``kind`` probes found among ``seen`` hashes (None: no probe)."""
        probes = _cat(self._probes[kind])
        return float(torch.isin(probes, seen).float().mean()) if len(probes) else None

    def summary(self) -> dict[str, Any]:
        """Hit rates of val and fresh-train probes among the seen hashes, and their ratio (None: unknown)."""
        seen = torch.unique(_cat(self._seen))
        out: dict[str, Any] = {"unit": "example" if self.pairs else f"{self.n}-gram", "seen": len(seen)}
        for kind in self._probes:
            out[f"{kind}_probes"] = self._probe_count(kind)
            out[f"{kind}_hits"] = self._hits(kind, seen)
        val, fresh = out["val_hits"], out["fresh_hits"]
        enough = out["val_probes"] >= MIN_PROBES and out["fresh_probes"] >= MIN_PROBES
        usable = enough and val is not None and fresh is not None and fresh >= MIN_BASELINE_HITS
        out["ratio"] = min(val / fresh, 1.0) if usable else None
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"seen": _cat(self._seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._seen = [state["seen"].clone()]
        self._seen_count = len(state["seen"])


def _cat(chunks: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.int64)
