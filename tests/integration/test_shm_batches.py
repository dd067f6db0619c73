"""The same-host fast path: batches through /dev/shm files equal the byte path's, files never leak,
a slow client holds the server back, and a bad probe only means bytes."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from data_service import shm as server_shm
from data_service.server import DataServiceServicer, serve_with_servicer
from simtrain import batch_wire, shm
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.jobs import DatasetSpec
from simtrain.settings import Settings
from trainer_service.data_client import DataClient

pytestmark = pytest.mark.skipif(not shm.SHM_DIR.is_dir(), reason="no /dev/shm")


@pytest.fixture(scope="module", autouse=True)
def private_shm_dir() -> Iterator[Path]:
    """This module's slots and probes in a directory of its own under /dev/shm, so that another simtrain on
    the host (a demo, a second test run) cannot add or remove files that the leak checks count."""
    path = Path(tempfile.mkdtemp(prefix="simtrain-tests-", dir=shm.SHM_DIR))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shm, "SHM_DIR", path)  # the client's and the server's side alike
        yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataServiceServicer, int, str, str]]:
    base = tmp_path_factory.mktemp("shm")
    (base / "data").mkdir()
    (base / "data" / "fox.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 3000)
    settings = Settings(data_root=base / "data", state_dir=base / "state", data_service_host="127.0.0.1")
    server, port, servicer = serve_with_servicer(settings, port=0)
    client = DataClient(f"127.0.0.1:{port}")
    text = client.prepare(DatasetSpec(module="text", source="fox.txt")).dataset_id
    pairs = client.prepare(DatasetSpec(module="sort", source="sort", packing="pairs")).dataset_id
    client.close()
    yield servicer, port, text, pairs
    server.stop(None)


def ours() -> set[str]:
    """The slot files (and probes) in /dev/shm now."""
    return {p.name for p in shm.SHM_DIR.iterdir() if p.name.startswith("simtrain-")}


def read(port: int, dataset_id: str, use_shm: bool, start: int = 0, steps: int = 13, per: int = 4) -> list:
    client = DataClient(f"127.0.0.1:{port}", use_shm=use_shm)
    try:
        batches = client.batches(dataset_id, "train", 4, 8, 3, start, steps, per_message=per)
        return [(x.numpy().copy(), y.numpy().copy()) for x, y in batches]
    finally:
        client.close()


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("which", [2, 3])
@pytest.mark.parametrize("per", [1, 4])
def test_shm_batches_equal_the_byte_path(service, which: int, per: int) -> None:
    servicer, port, dataset_id = service[0], service[1], service[which]
    before = ours()
    made = servicer.batches_made
    fast = read(port, dataset_id, True, per=per)
    assert servicer.batches_made - made == 13
    assert same(fast, read(port, dataset_id, False, per=per))
    assert same(fast[6:], read(port, dataset_id, True, start=6, steps=7, per=per))  # resume
    assert ours() == before


def test_the_client_gets_shm_files_and_takes_them(service) -> None:
    _, port, dataset_id, _ = service
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, shm.probe() as probe:
        assert probe is not None
        request = pb.StreamBatchesRequest(
            dataset_id=dataset_id, split="train", batch_size=4, block_size=8, num_steps=3, shm_probe=probe
        )
        stream = channel.unary_stream("/simtrain.data.v1.DataService/StreamBatches")
        messages, decoded, reader = [], [], shm.ShmReader()
        for m in stream(request.SerializeToString()):  # each slot read as its message comes
            name = pb.Batch.FromString(m).shm_file
            assert name and os.stat(shm.SHM_DIR / name).st_mode & 0o777 == 0o600
            messages.append(m)
            decoded.append(batch_wire.decode(m, reader))
        reader.close()
        assert not any(pb.Batch.FromString(m).x.data for m in messages)
        assert [b.step for b in decoded] == [0, 1, 2] and decoded[0].x.shape == (1, 4, 8)
        with pytest.raises(batch_wire.BatchError, match="offered none"):
            batch_wire.decode(messages[0])
    assert not ours() & {pb.Batch.FromString(m).shm_file for m in messages}


BAD_PROBES = ["", "../etc/passwd", "a/b", "..", ".hidden", "nope-" + "0" * 32, "x" * 300, "a\x00b"]


@pytest.mark.parametrize("probe", BAD_PROBES)
def test_a_bad_probe_means_bytes(service, probe: str) -> None:
    _, port, dataset_id, _ = service
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = pb.StreamBatchesRequest(
            dataset_id=dataset_id, split="train", batch_size=4, block_size=8, num_steps=2, shm_probe=probe
        )
        batches = list(pb_grpc.DataServiceStub(channel).StreamBatches(request))
    assert len(batches) == 2 and all(b.x.data and not b.shm_file for b in batches)


def test_a_probe_of_the_wrong_content_means_bytes(service) -> None:
    name = "simtrain-probe-wrong"
    path = shm.SHM_DIR / name
    path.write_text("something else")
    try:
        assert not shm.take_probe(name)
        link = shm.SHM_DIR / "simtrain-probe-link"
        link.symlink_to(path)
        try:
            assert not shm.take_probe(link.name)  # never followed
        finally:
            link.unlink()
    finally:
        path.unlink()


def test_a_slow_client_holds_the_server_back_and_cancelling_leaves_nothing(service) -> None:
    servicer, port, dataset_id, _ = service
    before = ours()
    client = DataClient(f"127.0.0.1:{port}", use_shm=True)
    try:
        batches = client.batches(dataset_id, "train", 4, 8, 0, 0, 10_000, per_message=1)
        made = servicer.batches_made
        next(batches)
        time.sleep(0.5)
        # One read, at most SLOTS written and waiting (gRPC buffers the tiny messages, not the slots).
        assert servicer.batches_made - made <= 1 + server_shm.SLOTS
        assert len(ours() - before) == server_shm.SLOTS  # the server took the probe
        batches.close()
    finally:
        client.close()
    deadline = time.monotonic() + 5
    while ours() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ours() == before


def _stream_forever(port: int, dataset_id: str, started: mp.Event, shm_dir: Path) -> None:
    shm.SHM_DIR = shm_dir  # a fresh process: the module's private directory, as in the test process
    client = DataClient(f"127.0.0.1:{port}", use_shm=True)
    for i, _ in enumerate(client.batches(dataset_id, "train", 4, 8, 0, 0, 10**9, per_message=2)):
        if i == 5:
            started.set()
        time.sleep(0.01)


def test_a_killed_client_leaves_no_files(service) -> None:
    _, port, dataset_id, _ = service
    before = ours()
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    child = ctx.Process(target=_stream_forever, args=(port, dataset_id, started, shm.SHM_DIR))
    child.start()
    try:
        assert started.wait(60)
        assert len(ours() - before) > 0
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    deadline = time.monotonic() + 10
    while ours() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ours() == before


def test_a_slot_that_cannot_be_read_falls_back_to_bytes(service, monkeypatch) -> None:
    _, port, dataset_id, _ = service
    tried = []

    def fail(self, name: str, nbytes: int) -> None:
        tried.append(name)
        raise shm.ShmError("no")

    monkeypatch.setattr(shm.ShmReader, "read", fail)
    client = DataClient(f"127.0.0.1:{port}", use_shm=True)
    try:
        batches = client.batches(dataset_id, "train", 4, 8, 3, 0, 5)
        got = [(x.numpy().copy(), y.numpy().copy()) for x, y in batches]
        assert len(tried) == 1 and not client.use_shm
    finally:
        client.close()
    assert same(got, read(port, dataset_id, False, steps=5, per=8))


def test_the_reader_writes_only_slot_files(tmp_path) -> None:
    """A server could name any file of the user's in /dev/shm: only one starting with MAGIC is mapped."""
    other = shm.SHM_DIR / f"simtrain-other-{os.getpid()}"
    other.write_bytes(b"\x01" * 4096)
    reader = shm.ShmReader()
    try:
        for name in (other.name, "../etc/passwd", "missing-" + "0" * 16):
            with pytest.raises(shm.ShmError):
                reader.read(name, 64)
        assert other.read_bytes() == b"\x01" * 4096
    finally:
        reader.close()
        other.unlink()


def test_the_setting_turns_it_off(service, monkeypatch) -> None:
    monkeypatch.setenv("SIMTRAIN_SHM_BATCHES", "false")
    monkeypatch.setattr("trainer_service.data_client.get_settings", Settings)
    client = DataClient(f"127.0.0.1:{service[1]}")
    assert not client.use_shm
    client.close()


def test_slot_files_of_a_dead_server_are_swept(monkeypatch) -> None:
    """A live writer's slots are locked and stay; a dead server's (nobody holds them) go."""
    monkeypatch.setattr(server_shm, "ORPHAN_AGE_S", -1.0)
    orphan = shm.SHM_DIR / "simtrain-00000000deadbeef-0"
    orphan.write_bytes(b"x")
    writer = server_shm.ShmWriter(128)
    try:
        name = writer.write(np.zeros((1, 2, 4), np.uint16), np.zeros((1, 2, 4), np.uint16), lambda: True)
        assert name is not None
        server_shm.sweep()
        assert not orphan.exists() and (shm.SHM_DIR / name).exists()
    finally:
        writer.close()
        orphan.unlink(missing_ok=True)
    assert not (shm.SHM_DIR / name).exists()


def test_a_full_dev_shm_means_bytes(service, monkeypatch) -> None:
    _, port, dataset_id, _ = service

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(server_shm.os, "posix_fallocate", full)
    before = ours()
    assert same(read(port, dataset_id, True), read(port, dataset_id, False))
    assert ours() == before


def test_a_dev_shm_full_mid_stream_keeps_the_slots_sent(service, monkeypatch) -> None:
    """The server waits for the client to read the slots it sent before it removes them and goes on in
    bytes: the client never fails a read and never falls back."""
    _, port, dataset_id, _ = service
    allocate, calls = os.posix_fallocate, []

    def full_at_the_third(fd: int, offset: int, length: int) -> None:
        calls.append(fd)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        allocate(fd, offset, length)

    monkeypatch.setattr(server_shm.os, "posix_fallocate", full_at_the_third)
    client = DataClient(f"127.0.0.1:{port}", use_shm=True)
    try:
        batches = client.batches(dataset_id, "train", 4, 8, 3, 0, 13, per_message=1)
        got = [(x.numpy().copy(), y.numpy().copy()) for x, y in batches]
        assert len(calls) == 3 and client.use_shm
    finally:
        client.close()
    assert same(got, read(port, dataset_id, False))


def test_a_slot_is_read_once_and_only_its_size() -> None:
    writer = server_shm.ShmWriter(256)
    reader = shm.ShmReader()
    try:
        x = np.arange(8, dtype=np.uint16).reshape(1, 2, 4)
        name = writer.write(x, x + 1, lambda: True)
        assert name is not None
        with pytest.raises(shm.ShmError, match="holds no message"):
            reader.read(name, 257)
        data = np.frombuffer(reader.read(name, 128), dtype="<i8")
        assert data.tolist() == list(range(8)) + list(range(1, 9))
        with pytest.raises(shm.ShmError, match="holds no message"):  # freed: nothing new in it
            reader.read(name, 128)
        assert writer.write(x, x, lambda: False) is not None  # slot 1 is new: no wait
    finally:
        reader.close()
        writer.close()
