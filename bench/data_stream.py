"""Benchmark StreamBatches against a raw loopback socket moving the same bytes.

Batches of 64 x 256 (x and y, int64: 256 KiB a batch) go to one and to four concurrent client
processes, from the data service running as its own process. In the same run a raw TCP socket server
sends frames of the same size to the same number of clients, and the ratio gRPC / raw is printed.
Measured side by side: the trainer's own client (``DataClient.batches``, several batches per
message) on the same-host fast path (``trainer_client_shm``: tensors in /dev/shm slots named by the
messages, copied out once) and streaming bytes (``trainer_client``: torch tensors viewed in place in
the message bytes), the byte client asking for one batch per message (what a server that ignores
``batches_per_message`` gives), and a stock server that builds protobuf messages (how the service
first worked) read by the generated protobuf client. The goal ratio is 0.30.

    .venv/bin/python bench/data_stream.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from data_common import start_data_service, write_corpus  # noqa: E402

from simtrain.data.v1 import data_service_pb2 as pb  # noqa: E402
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc  # noqa: E402

BATCH, BLOCK = 64, 256
FRAME = 2 * BATCH * BLOCK * 8
STEPS = {1: 2000, 4: 500}  # batches per client: 512 MiB in all, either way
ROUNDS = 3


def trainer_client(
    address: str,
    dataset_id: str,
    steps: int,
    seed: int,
    per_message: int | None,
    use_shm: bool,
    ready: mp.Queue,
    start: mp.Event,
    out: mp.Queue,
) -> None:
    """Read ``steps`` batches as torch tensors through the trainer's ``DataClient``, as a job does."""
    from trainer_service.data_client import DataClient

    client = DataClient(address, use_shm=use_shm)
    grpc.channel_ready_future(client.channel).result(timeout=30)
    ready.put(True)
    start.wait()
    t0 = time.monotonic()
    n = 0
    for x, y in client.batches(dataset_id, "train", BATCH, BLOCK, seed, 0, steps, per_message=per_message):
        n += x.numel() * x.element_size() + y.numel() * y.element_size()
    out.put((t0, time.monotonic(), n))
    client.close()


def protobuf_client(
    address: str, dataset_id: str, steps: int, seed: int, ready: mp.Queue, start: mp.Event, out: mp.Queue
) -> None:
    """Read ``steps`` batches with the generated class (two copies of the tensors) and view them as arrays."""
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        request = pb.StreamBatchesRequest(
            dataset_id=dataset_id,
            split="train",
            batch_size=BATCH,
            block_size=BLOCK,
            seed=seed,
            num_steps=steps,
        )
        call = pb_grpc.DataServiceStub(channel).StreamBatches
        grpc.channel_ready_future(channel).result(timeout=30)
        ready.put(True)
        start.wait()
        t0 = time.monotonic()
        n = 0
        for message in call(request):
            x = np.frombuffer(message.x.data, dtype="<i8").reshape(tuple(message.x.shape))
            y = np.frombuffer(message.y.data, dtype="<i8").reshape(tuple(message.y.shape))
            n += x.nbytes + y.nbytes
        out.put((t0, time.monotonic(), n))


def raw_server(port_out: mp.Queue, clients: int, steps: int) -> None:
    payload = np.random.default_rng(0).integers(0, 100, size=FRAME // 8).astype("<i8").tobytes()
    frame = FRAME.to_bytes(8, "little") + payload
    with socket.create_server(("127.0.0.1", 0)) as server:
        port_out.put(server.getsockname()[1])

        def serve_one(conn: socket.socket) -> None:
            with conn:
                for _ in range(steps):
                    conn.sendall(frame)

        with ThreadPoolExecutor(clients) as pool:
            for _ in range(clients):
                pool.submit(serve_one, server.accept()[0])


def raw_client(port: int, steps: int, ready: mp.Queue, start: mp.Event, out: mp.Queue) -> None:
    buf = bytearray(FRAME)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        ready.put(True)
        start.wait()
        t0 = time.monotonic()
        n = 0
        for _ in range(steps):
            size = int.from_bytes(conn.recv(8, socket.MSG_WAITALL), "little")
            got = 0
            while got < size:
                got += conn.recv_into(view[got:size], size - got)
            np.frombuffer(buf, dtype="<i8")
            n += size
        out.put((t0, time.monotonic(), n))


def run_clients(target, args_for, clients: int) -> dict:
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), ready, start, out)) for i in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:  # every client connected before the clock starts
        ready.get(timeout=120)
    start.set()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    begin, end = min(r[0] for r in results), max(r[1] for r in results)
    total = sum(r[2] for r in results)
    return {
        "clients": clients,
        "batches_per_s": total / FRAME / (end - begin),
        "mb_per_s": total / (end - begin) / 1e6,
    }


def measure_raw(clients: int) -> dict:
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=raw_server, args=(ports, clients, STEPS[clients]))
    server.start()
    port = ports.get(timeout=30)
    try:
        return run_clients(raw_client, lambda i: (port, STEPS[clients]), clients)
    finally:
        server.join(timeout=60)


def stock_server(data_root: str, state_dir: str, port_out: mp.Queue, stop: mp.Event) -> None:
    """The same servicer, but every batch built as a protobuf message and serialised by protobuf."""
    from data_service.sampling import get_batch
    from data_service.server import DataServiceServicer
    from simtrain.settings import Settings

    class Stock(DataServiceServicer):
        def StreamBatches(self, request, context):
            ds = self.store.get(request.dataset_id)
            tokens = ds.tokens(request.split)
            for step in range(request.start_step, request.start_step + request.num_steps):
                x, y = get_batch(
                    tokens,
                    block_size=request.block_size,
                    batch_size=request.batch_size,
                    seed=request.seed,
                    split=request.split,
                    step=step,
                )
                yield pb.Batch(
                    step=step,
                    x=pb.Tensor(dtype="int64", shape=list(x.shape), data=x.astype("<i8").tobytes()),
                    y=pb.Tensor(dtype="int64", shape=list(y.shape), data=y.astype("<i8").tobytes()),
                    vocab_size=ds.meta["vocab_size"],
                )

    settings = Settings(data_root=Path(data_root), state_dir=Path(state_dir))
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16), options=[("grpc.max_send_message_length", 64 << 20)]
    )
    pb_grpc.add_DataServiceServicer_to_server(Stock(settings), server)
    port_out.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop.wait()
    server.stop(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds (best one reported)")
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        write_corpus(root / "data" / "corpus.txt", 8 << 20)
        child, address = start_data_service(root / "data", root / "state")
        ctx = mp.get_context("spawn")
        ports, stop = ctx.Queue(), ctx.Event()
        stock = ctx.Process(target=stock_server, args=(str(root / "data"), str(root / "state"), ports, stop))
        try:
            with grpc.insecure_channel(address) as channel:
                info = pb_grpc.DataServiceStub(channel).PrepareDataset(
                    pb.PrepareDatasetRequest(module="text", source="corpus.txt", tokenizer="char")
                )
            stock.start()
            stock_address = f"127.0.0.1:{ports.get(timeout=60)}"
            report = {
                "bench": "data_stream",
                "batch": [BATCH, BLOCK],
                "bytes_per_batch": FRAME,
                "goal_ratio": 0.30,
            }
            for clients in (1, 4):
                report[f"{clients}_client" + ("s" if clients > 1 else "")] = measure(
                    clients, address, stock_address, info.dataset_id, rounds
                )
        finally:
            child.terminate()
            child.wait()
            stop.set()
            stock.join(timeout=30)
    print(json.dumps(report, indent=2))


def measure(clients: int, address: str, stock_address: str, dataset_id: str, num_rounds: int) -> dict:
    """Rounds that each run every variant once in turn, so other load on the machine hits all of them
    alike; the best round of each is reported, and the ratio of each round's pair."""
    steps = STEPS[clients]
    variants = {
        "raw_socket": lambda: measure_raw(clients),
        "trainer_client_shm": lambda: run_clients(
            trainer_client, lambda i: (address, dataset_id, steps, i, None, True), clients
        ),
        "trainer_client": lambda: run_clients(
            trainer_client, lambda i: (address, dataset_id, steps, i, None, False), clients
        ),
        "trainer_client_one_batch_per_message": lambda: run_clients(
            trainer_client, lambda i: (address, dataset_id, steps, i, 1, False), clients
        ),
        "stock_server_protobuf_client": lambda: run_clients(
            protobuf_client, lambda i: (stock_address, dataset_id, steps, i), clients
        ),
    }
    rounds = [{name: run() for name, run in variants.items()} for _ in range(num_rounds)]
    best = {name: max((r[name] for r in rounds), key=lambda m: m["mb_per_s"]) for name in variants}
    grpc_names = [name for name in variants if name != "raw_socket"]
    return {
        "best_of_rounds": best,
        "ratio_to_raw_best": {n: best[n]["mb_per_s"] / best["raw_socket"]["mb_per_s"] for n in grpc_names},
        "ratio_to_raw_median_of_rounds": {
            n: statistics.median(r[n]["mb_per_s"] / r["raw_socket"]["mb_per_s"] for r in rounds)
            for n in grpc_names
        },
        "rounds_mb_per_s": [{n: round(r[n]["mb_per_s"]) for n in variants} for r in rounds],
    }


if __name__ == "__main__":
    main()
