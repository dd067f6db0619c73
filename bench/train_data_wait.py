"""Data wait: the share of step time the trainer waits for batches, streamed over gRPC from a data service
in its own process, against batches made in-process from the same prepared dataset.

gpt-nano is the hardest case: its steps are the shortest, so the stream has the least time to keep up.
The remote side is what a job runs (DataClient, zero-copy tensors, the prefetch thread); the in-process
side slices the memory-mapped tokens directly. The two alternate in rounds; the JSON has both and the gap.

    .venv/bin/python bench/train_data_wait.py [--model-type gpt-nano] [--steps 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from data_service.sampling import get_batch
from data_service.store import Store
from simtrain.cli import DEMO_CORPUS
from simtrain.jobs import DatasetSpec
from simtrain.process import stop_process
from trainer_service.data_client import DataClient
from trainer_service.model import GPT, GPTConfig
from trainer_service.prefetch import Prefetcher
from trainer_service.run_loop import PREFETCH_DEPTH
from trainer_service.trainer import Trainer, TrainerConfig

GOAL = 0.02  # remote data_wait_frac at most this much above in-process


def start_data_service(root: Path) -> tuple[subprocess.Popen, str]:
    env = os.environ | {
        "SIMTRAIN_DATA_ROOT": str(root / "data"),
        "SIMTRAIN_STATE_DIR": str(root / "var"),
        "SIMTRAIN_DATA_SERVICE_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "data_service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if "listening on" in line:
            return proc, line.split()[-1]
    raise RuntimeError("the data service did not start")


def local_batches(tokens, batch_size: int, block_size: int, start: int, steps: int) -> Iterator:
    for step in range(start, start + steps):
        x, y = get_batch(
            tokens, block_size=block_size, batch_size=batch_size, seed=0, split="train", step=step
        )
        yield torch.from_numpy(x), torch.from_numpy(y)


class Side:
    """One way of getting batches, with its own model and trainer, continued round after round."""

    def __init__(self, model_type: str, vocab_size: int, batch_size: int, block_size: int) -> None:
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset(model_type, vocab_size, block_size))
        self.trainer = Trainer(
            TrainerConfig(device="cpu", max_iters=0, batch_size=batch_size), model, iter(())
        )
        self.waits: list[float] = []
        self.trainer.add_callback("on_batch_end", lambda t: self.waits.append(t.data_wait_s))
        self.elapsed = 0.0

    def run(self, batches: Iterator, steps: int) -> None:
        self.trainer.batches = batches
        self.trainer.config.max_iters = self.trainer.iter_num + steps
        start = time.perf_counter()
        self.trainer.run()
        self.elapsed += time.perf_counter() - start

    def summary(self) -> dict:
        steps = len(self.waits)
        return {
            "steps": steps,
            "ms_per_iter": 1000 * self.elapsed / steps,
            "data_wait_frac": sum(self.waits) / self.elapsed,
            "max_wait_ms": 1000 * max(self.waits),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-type", default="gpt-nano")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="steps per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    B, T = args.batch_size, args.block_size

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        shutil.copyfile(DEMO_CORPUS, root / "data" / "tiny.txt")
        proc, address = start_data_service(root)
        client = DataClient(address)
        try:
            info = client.prepare(DatasetSpec(module="text", source="tiny.txt"))
            tokens = Store(root / "var" / "prepared").get(info.dataset_id).tokens("train")
            remote = Side(args.model_type, info.vocab_size, B, T)
            local = Side(args.model_type, info.vocab_size, B, T)
            for r in range(args.rounds):
                start = r * args.steps
                stream = client.batches(info.dataset_id, "train", B, T, 0, start, args.steps)
                batches = Prefetcher(stream, depth=PREFETCH_DEPTH)
                try:
                    remote.run(batches, args.steps)
                finally:
                    batches.close()
                local.run(local_batches(tokens, B, T, start, args.steps), args.steps)
        finally:
            client.close()
            stop_process(proc)

    remote_s, local_s = remote.summary(), local.summary()
    gap = remote_s["data_wait_frac"] - local_s["data_wait_frac"]
    result = {
        "bench": "train_data_wait",
        "model_type": args.model_type,
        "batch_size": B,
        "block_size": T,
        "threads": torch.get_num_threads(),
        "prefetch_depth": PREFETCH_DEPTH,
        "remote_grpc": remote_s,
        "in_process": local_s,
        "data_wait_gap": gap,
        "step_time_ratio_remote_over_local": remote_s["ms_per_iter"] / local_s["ms_per_iter"],
        "goal_gap_at_most": GOAL,
        "goal_met": gap <= GOAL,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
