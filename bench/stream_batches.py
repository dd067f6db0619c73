"""Benchmark the batch path: gRPC stream throughput, and data wait with vs without prefetching.

Runs a real data service in-process on a free loopback port, then prints one JSON document. The
prefetch comparison trains gpt-nano for the same steps twice, in one run, and reports the ratio, so a
noisy machine affects both sides alike.

    .venv/bin/python bench/stream_batches.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from data_service.server import serve
from simtrain.cli import DEMO_CORPUS
from simtrain.jobs import DatasetSpec
from simtrain.settings import Settings
from trainer_service.data_client import DataClient
from trainer_service.model import GPT, GPTConfig
from trainer_service.prefetch import Prefetcher
from trainer_service.trainer import Trainer, TrainerConfig

STEPS = 200


def stream_throughput(client: DataClient, dataset_id: str, batch_size: int, block_size: int) -> dict:
    start = time.perf_counter()
    n_bytes = 0
    for x, y in client.batches(dataset_id, "train", batch_size, block_size, 0, 0, STEPS):
        n_bytes += x.numel() * x.element_size() + y.numel() * y.element_size()
    elapsed = time.perf_counter() - start
    return {
        "batch_size": batch_size,
        "block_size": block_size,
        "batches_per_s": STEPS / elapsed,
        "mb_per_s": n_bytes / elapsed / 1e6,
    }


def train_data_wait(client: DataClient, dataset_id: str, vocab_size: int, prefetch: bool) -> dict:
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt-nano", vocab_size, 64))
    batches = client.batches(dataset_id, "train", 32, 64, 0, 0, STEPS)
    source = Prefetcher(batches) if prefetch else batches
    trainer = Trainer(TrainerConfig(device="cpu", max_iters=STEPS), model, source)
    waits: list[float] = []
    trainer.add_callback("on_batch_end", lambda t: waits.append(t.data_wait_s))
    start = time.perf_counter()
    trainer.run()
    elapsed = time.perf_counter() - start
    return {"ms_per_iter": 1000 * elapsed / STEPS, "data_wait_frac": sum(waits) / elapsed}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        shutil.copyfile(DEMO_CORPUS, root / "data" / "tiny.txt")
        settings = Settings(data_root=root / "data", state_dir=root / "var")
        server, port = serve(settings, port=0)
        client = DataClient(f"127.0.0.1:{port}")
        try:
            info = client.prepare(DatasetSpec(module="text", source="tiny.txt"))
            throughput = [stream_throughput(client, info.dataset_id, b, t) for b, t in [(32, 64), (64, 256)]]
            plain = train_data_wait(client, info.dataset_id, info.vocab_size, prefetch=False)
            prefetched = train_data_wait(client, info.dataset_id, info.vocab_size, prefetch=True)
        finally:
            client.close()
            server.stop(None)
    result = {
        "bench": "stream_batches",
        "steps": STEPS,
        "stream": throughput,
        "train_gpt_nano_cpu": {"no_prefetch": plain, "prefetch": prefetched},
        "data_wait_ratio_no_prefetch_over_prefetch": plain["data_wait_frac"]
        / max(prefetched["data_wait_frac"], 1e-9),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
