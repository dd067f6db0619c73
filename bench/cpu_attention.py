"""CPU causal attention, forward and backward: our kernel against PyTorch's SDPA, side by side.

Both take c_attn's output ``[B, T, 3C]`` and give ``[B, T, C]``, as the model uses them (SDPA with the
head split and merge it needs); the two alternate call by call and the median of each is kept. Two rows
add minGPT's attention dropout (0.1), for which PyTorch's CPU SDPA has no fused kernel.

    .venv/bin/python bench/cpu_attention.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from timing import alternating

from trainer_service import ops

# (name, batch, positions, heads, head size, dropout): minGPT's small presets at block 128, then longer
# and wider, then two with attention dropout.
SHAPES = [
    ("gpt-nano", 32, 128, 3, 16, 0.0),
    ("gpt-micro", 32, 128, 4, 32, 0.0),
    ("gpt-mini", 32, 128, 6, 32, 0.0),
    ("gpt2 heads, T=256", 8, 256, 12, 64, 0.0),
    ("gpt2 heads, T=1024", 2, 1024, 12, 64, 0.0),
    ("head size 128", 4, 256, 4, 128, 0.0),
    ("gpt-nano, dropout", 32, 128, 3, 16, 0.1),
    ("gpt-mini, dropout", 32, 128, 6, 32, 0.1),
]


def compare(batch: int, positions: int, n_head: int, head_size: int, dropout: float, repeats: int) -> dict:
    qkv = torch.randn(batch, positions, 3 * n_head * head_size, requires_grad=True)
    grad = torch.randn(batch, positions, n_head * head_size)
    runs = {
        "ours": lambda: ops.attention_kernel(qkv, n_head, dropout),
        "sdpa": lambda: ops.sdpa_attention(qkv, n_head, dropout),
    }
    calls = {name: lambda attention=attention: attention().backward(grad) for name, attention in runs.items()}
    alternating(calls, 2)  # warm up
    ms = {name: 1000 * statistics.median(t) for name, t in alternating(calls, repeats).items()}
    return {"ours_ms": ms["ours"], "sdpa_ms": ms["sdpa"], "speedup": ms["sdpa"] / ms["ours"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if ops.library("attention") is None:
        raise SystemExit("no C compiler here: the attention kernel cannot be built")
    torch.manual_seed(0)
    results = []
    for name, *sizes in SHAPES:
        shape = dict(zip(("batch", "positions", "n_head", "head_size", "dropout"), sizes, strict=True))
        results.append({"shape": name, **shape, **compare(*sizes, repeats=args.repeats)})
    print(
        json.dumps(
            {"bench": "cpu_attention", "threads": torch.get_num_threads(), "torch": torch.__version__,
             "measured": "forward + backward, float32, training mode", "results": results},
            indent=2,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
