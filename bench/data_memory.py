"""Benchmark memory: preparing a 200 MB text file streams, and serving its 200M tokens stays small.

1. A child process prepares a generated 200 MB text with the char tokenizer (200M tokens, uint16)
   and reports its peak RSS; the goal is well under file size x token width (400 MB).
2. The data service serves that dataset as its own process; after streaming batches from all over
   it, its peak RSS is read from /proc; the goal is under 300 MB (the tokens are memory-mapped).

    .venv/bin/python bench/data_memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from data_common import memory_mb, start_data_service, write_corpus  # noqa: E402

from simtrain.data.v1 import data_service_pb2 as pb  # noqa: E402
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc  # noqa: E402

SIZE = 200 << 20
STREAM_BATCHES = 1500


def prepare_in_child(data_root: Path, state_dir: Path) -> dict:
    """Run the preparation in a fresh process, so its peak RSS is its own."""
    code = f"""
import json, resource, time
from pathlib import Path
from data_service.modules import discover
from data_service.store import Store
start = time.perf_counter()
store = Store(Path({str(state_dir / "prepared")!r}))
ds = store.prepare(discover()["text"], Path({str(data_root)!r}), "big.txt")
print(json.dumps({{"dataset_id": ds.id, "seconds": time.perf_counter() - start,
    "tokens": sum(s["num_tokens"] for s in ds.meta["splits"].values()), "dtype": ds.meta["dtype"],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        size = write_corpus(root / "data" / "big.txt", SIZE).stat().st_size
        prepared = prepare_in_child(root / "data", root / "state")
        child, address = start_data_service(root / "data", root / "state")
        try:
            at_start = memory_mb(child.pid)
            with grpc.insecure_channel(
                address, options=[("grpc.max_receive_message_length", 64 << 20)]
            ) as ch:
                stub = pb_grpc.DataServiceStub(ch)
                request = pb.StreamBatchesRequest(
                    dataset_id=prepared["dataset_id"],
                    split="train",
                    batch_size=64,
                    block_size=256,
                    num_steps=STREAM_BATCHES,
                )
                start = time.perf_counter()
                n = sum(1 for _ in stub.StreamBatches(request))
                elapsed = time.perf_counter() - start
            serving = memory_mb(child.pid)
        finally:
            child.terminate()
            child.wait()
    token_width = 2 if prepared["dtype"] == "uint16" else 4
    report = {
        "bench": "data_memory",
        "prepare": {
            "source_mb": size / 1e6,
            "tokens": prepared["tokens"],
            "seconds": prepared["seconds"],
            "peak_rss_mb": prepared["peak_rss_mb"],
            "file_size_x_token_width_mb": size * token_width / 1e6,
        },
        "serve": {
            "tokens": prepared["tokens"],
            "batches_streamed": n,
            "batches_per_s": n / elapsed,
            "at_start": at_start,
            "after_streaming": serving,
            "goal_peak_rss_mb": 300,
        },
        "bench_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
