"""GPU training speed: gpt2 (124M) at block 1024 in bf16, with and without torch.compile; tokens/s and MFU.

Runs the real training path (Trainer: bf16 autocast, TF32, fused AdamW, pinned batches copied on a side
stream) on random tokens, so it measures the math, not a dataset. Needs CUDA; takes a few minutes, most
of it compiling.

    .venv/bin/python bench/gpu.py [--batch-size 16] [--steps 50] [--no-compile]

``--device cpu --model-type gpt-nano --block-size 64`` runs the same script in seconds without a GPU, to
check the script itself (the figures then mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator

import torch

from trainer_service import metrics
from trainer_service.device import pin
from trainer_service.model import GPT, GPTConfig
from trainer_service.prefetch import Prefetcher
from trainer_service.trainer import Trainer, TrainerConfig

VOCAB = 50257  # GPT-2's


def random_batches(batch_size: int, block: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    while True:
        tokens = torch.randint(0, VOCAB, (batch_size, block + 1), generator=g)
        yield tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, compile: bool) -> dict:
    torch.manual_seed(0)
    block, batch_size, warmup, steps = args.block_size, args.batch_size, args.warmup, args.steps
    model = GPT(GPTConfig.from_preset(args.model_type, VOCAB, block))
    config = TrainerConfig(device=args.device, max_iters=warmup, batch_size=batch_size, compile=compile)
    on_gpu = torch.device(args.device).type == "cuda"
    batches = Prefetcher(random_batches(batch_size, block), depth=4, transform=pin if on_gpu else None)
    trainer = Trainer(config, model, batches)
    waits: list[float] = []
    trainer.add_callback("on_batch_end", lambda t: waits.append(t.data_wait_s))

    start = time.perf_counter()
    trainer.run()  # warmup: compilation (when on), cuBLAS heuristics, the allocator
    device = trainer.device
    sync(device)
    warmup_s = time.perf_counter() - start

    waits.clear()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    trainer.config.max_iters = warmup + steps
    start = time.perf_counter()
    trainer.run()
    loss = trainer.loss.item()  # waits for the last step
    elapsed = time.perf_counter() - start
    batches.close()

    tokens_per_s = steps * batch_size * block / elapsed
    name = metrics.device_name(device)
    precision = metrics.precision_name(device, trainer.autocast_dtype)
    peak = metrics.peak_flops(name, precision)
    return {
        "compile": compile,
        "precision": precision,
        "warmup_s": warmup_s,
        "ms_per_iter": 1000 * elapsed / steps,
        "tokens_per_s": tokens_per_s,
        "mfu": metrics.mfu(tokens_per_s, model.flops_per_token(block), peak),
        "data_wait_frac": sum(waits) / elapsed,
        "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if on_gpu else None,
        "final_loss": loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-type", default="gpt2")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled run")
    args = parser.parse_args()
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU; none is visible (--device cpu only checks the script)")

    runs = [measure(args, compile=False)]
    if not args.no_compile:
        runs.append(measure(args, compile=True))
    with torch.device("meta"):
        num_params = GPT(GPTConfig.from_preset(args.model_type, VOCAB, args.block_size)).num_params()
    result = {
        "bench": "gpu",
        "device": metrics.device_name(torch.device(args.device)),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "model_type": args.model_type,
        "num_params": num_params,
        "block_size": args.block_size,
        "batch_size": args.batch_size,
        "runs": runs,
    }
    if len(runs) == 2:
        result["compile_speedup"] = runs[1]["tokens_per_s"] / runs[0]["tokens_per_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
