"""Conformance: our data service passes every check; a service that breaks the contract fails the
checks it breaks; the CLI prints pass/fail per check and its exit status says whether all passed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from data_service.server import DataServiceServicer, add_servicer, serve
from data_service.wire import encode_batch
from simtrain import batch_wire
from simtrain.conformance import Result, corpus, run_checks
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.settings import Settings
from simtrain.shm import HEADER_BYTES


def settings_for(base: Path) -> Settings:
    (base / "data").mkdir(exist_ok=True)
    return Settings(data_root=base / "data", state_dir=base / "state", data_service_host="127.0.0.1")


@pytest.fixture(scope="module")
def our_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(tmp_path_factory.mktemp("ours"))


@pytest.fixture(scope="module")
def ours(our_settings: Settings) -> Iterator[str]:
    server, port = serve(our_settings, port=0)
    yield f"127.0.0.1:{port}"
    server.stop(None)


class Sloppy(DataServiceServicer):
    """Breaks the contract twice: batches change from call to call, and a missing dataset is UNKNOWN."""

    calls = 0

    def StreamBatches(self, request, context):
        Sloppy.calls += 1
        for batch in super().StreamBatches(request, context):
            message = pb.Batch.FromString(batch)
            x = np.frombuffer(message.x.data, dtype="<i8").copy()
            x[0] = Sloppy.calls % message.vocab_size
            message.x.data = x.tobytes()
            yield message

    def GetDataset(self, request, context):
        if request.dataset_id == "00000000deadbeef":
            raise RuntimeError("no such thing")  # unhandled: gRPC answers UNKNOWN
        return super().GetDataset(request, context)


@pytest.fixture(scope="module")
def sloppy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    add_servicer(Sloppy(settings_for(tmp_path_factory.mktemp("sloppy"))), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_our_service_passes_every_check(ours: str):
    results = run_checks(ours)
    failed = [f"{r.name}: {r.detail}" for r in results if r.passed is False]
    assert not failed
    names = {r.name for r in results}
    for expected in (
        "listing",
        "source listing",
        "prepare idempotency",
        "batch shape, dtype and vocab bound",
        "determinism",
        "resume equivalence",
        "rank disjointness",
        "batches per message",
        "shared-memory fast path",
        "tokenizer definition",
        "rows as training sees them",
    ):
        assert expected in names
    fast = next(r for r in results if r.name == "shared-memory fast path")
    assert "through /dev/shm slots" in fast.detail
    assert sum(r.name.startswith("error code:") for r in results) >= 8


def test_a_broken_service_fails_what_it_breaks(sloppy: str):
    results = {r.name: r for r in run_checks(sloppy)}
    assert results["determinism"].passed is False
    assert "same request, other batches" in results["determinism"].detail
    assert results["resume equivalence"].passed is False
    unknown = results["error code: GetDataset of an unknown id"]
    assert unknown.passed is False and unknown.detail.startswith("UNKNOWN")
    assert results["listing"].passed and results["prepare idempotency"].passed
    # Without a health service registered, the health check fails rather than crashing the run.
    assert results["health"].passed is False


class Reversed(DataServiceServicer):
    """Packs the batches of a message of several in reverse order (in bytes; its fast path is right)."""

    def StreamBatches(self, request, context):
        for message in super().StreamBatches(request, context):
            if isinstance(message, bytes) and len(b := batch_wire.decode(message)) > 1:
                message = encode_batch(b.step, b.x[::-1], b.y[::-1], b.vocab_size)
            yield message


def checks_of(servicer: type[DataServiceServicer], base: Path) -> dict[str, Result]:
    """The conformance results of a server running ``servicer``."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    add_servicer(servicer(settings_for(base)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        return {r.name: r for r in run_checks(f"127.0.0.1:{port}")}
    finally:
        server.stop(None)


def test_batches_packed_out_of_order_fail(tmp_path: Path):
    results = checks_of(Reversed, tmp_path)
    assert results["batches per message"].passed is False
    assert "differ from those sent one per message" in results["batches per message"].detail
    assert results["determinism"].passed and results["shared-memory fast path"].passed


class Skewed(DataServiceServicer):
    """Fills its shared-memory slots with other batches than it streams as bytes."""

    @staticmethod
    def _shm_batch(batch_fn, shm, step, n, context):
        message = DataServiceServicer._shm_batch(batch_fn, shm, step, n, context)
        slot = {name: mm for name, mm, _ in shm.slots}[message.shm_file]
        slot[HEADER_BYTES] ^= 1  # x's first id, one off
        return message


def test_a_fast_path_of_other_batches_fails(tmp_path: Path):
    results = checks_of(Skewed, tmp_path)
    assert results["shared-memory fast path"].passed is False
    assert "differ from those sent as bytes" in results["shared-memory fast path"].detail
    assert results["batches per message"].passed


class Forgetful(DataServiceServicer):
    """Lists its sources without the one just uploaded."""

    def ListSources(self, request, context):
        listed = super().ListSources(request, context)
        return pb.ListSourcesResponse(sources=[s for s in listed.sources if "conformance" not in s.name])


class Unlisting(DataServiceServicer):
    """Has no source listing, as a server older than it."""

    def ListSources(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def test_source_listing_must_list_the_upload_and_is_optional(tmp_path: Path):
    (tmp_path / "forgetful").mkdir()
    forgetful = checks_of(Forgetful, tmp_path / "forgetful")["source listing"]
    assert forgetful.passed is False and "is not listed" in forgetful.detail
    (tmp_path / "unlisting").mkdir()
    unlisting = checks_of(Unlisting, tmp_path / "unlisting")
    assert unlisting["source listing"].passed is None
    assert "not offered (ListSources is optional" in unlisting["source listing"].detail
    assert unlisting["prepare idempotency"].passed


class Misspelling(DataServiceServicer):
    """Hands out a tokenizer definition with "!" where its vocabulary has the space."""

    def GetTokenizer(self, request, context):
        definition = super().GetTokenizer(request, context)
        state = json.loads(definition.state_json)
        state["chars"] = state["chars"].replace(" ", "!")  # still sorted: a vocabulary, but not its own
        return pb.TokenizerDefinition(kind=definition.kind, state_json=json.dumps(state))


class Tokenizerless(DataServiceServicer):
    """Has no GetTokenizer, as a server older than it."""

    def GetTokenizer(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def test_the_tokenizer_definition_must_match_and_is_optional(tmp_path: Path):
    (tmp_path / "ours").mkdir()
    ours = checks_of(DataServiceServicer, tmp_path / "ours")["tokenizer definition"]
    assert ours.passed and "decodes and encodes as the server does" in ours.detail
    (tmp_path / "misspelling").mkdir()
    wrong = checks_of(Misspelling, tmp_path / "misspelling")["tokenizer definition"]
    assert wrong.passed is False and "decodes a batch row otherwise than Decode does" in wrong.detail
    (tmp_path / "tokenizerless").mkdir()
    missing = checks_of(Tokenizerless, tmp_path / "tokenizerless")
    assert missing["tokenizer definition"].passed is None
    assert "GetTokenizer is optional" in missing["tokenizer definition"].detail
    assert missing["encode/decode round trip"].passed


class Unrowed(DataServiceServicer):
    """Has no GetRows, as a server older than it."""

    def GetRows(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


class Misrowed(DataServiceServicer):
    """Says a row's first token is trained: it never is (no position predicts it)."""

    def GetRows(self, request, context):
        answer = super().GetRows(request, context)
        for row in answer.rows:
            row.tokens[0].role = pb.TOKEN_ROLE_TRAINED
        return answer


class Unbounded(DataServiceServicer):
    """Takes any count, a negative one too."""

    def GetRows(self, request, context):
        return (
            pb.GetRowsResponse(packing="stream") if request.count <= 0 else super().GetRows(request, context)
        )


def test_rows_are_checked_and_optional(tmp_path: Path):
    checks = {}
    for servicer in (Unrowed, Misrowed, Unbounded):
        (tmp_path / servicer.__name__).mkdir()
        checks[servicer] = checks_of(servicer, tmp_path / servicer.__name__)["rows as training sees them"]
    assert checks[Unrowed].passed is None and "not offered (GetRows is optional" in checks[Unrowed].detail
    assert (
        checks[Misrowed].passed is False
        and "row 0's first token is TOKEN_ROLE_TRAINED, not MASKED" in checks[Misrowed].detail
    )
    assert checks[Unbounded].passed is False and "GetRows of count 0 succeeded" in checks[Unbounded].detail


def run_cli(*args: str) -> subprocess.CompletedProcess:
    simtrain = Path(sys.executable).parent / "simtrain"
    return subprocess.run([str(simtrain), "conformance", *args], capture_output=True, text=True, timeout=120)


def test_cli_prints_each_check_and_exits_by_the_result(ours: str, sloppy: str):
    good = run_cli(ours)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "PASS  determinism" in good.stdout
    assert "0 failed" in good.stdout
    bad = run_cli(sloppy)
    assert bad.returncode == 1
    assert "FAIL  determinism" in bad.stdout and "PASS  listing" in bad.stdout


def test_cli_with_a_source_on_the_server_skips_the_upload(ours: str, our_settings: Settings):
    (our_settings.data_root / "given.txt").write_text(corpus(), encoding="utf-8")
    done = run_cli(ours, "--source", "given.txt")
    assert done.returncode == 0, done.stdout
    assert "SKIP  upload" in done.stdout


def test_a_label_source_module_skips_what_cannot_apply_to_it(ours: str):
    """sort makes its data from options: no path is read, and the uploaded corpus is not its text."""
    results = {r.name: r for r in run_checks(ours, module="sort")}
    assert not [f"{r.name}: {r.detail}" for r in results.values() if r.passed is False]
    skipped = {name for name, r in results.items() if r.passed is None}
    assert skipped == {
        "encode/decode round trip",
        "error code: PrepareDataset of a missing source",
        "error code: PrepareDataset of '../' a path outside",
    }
    for name in skipped:
        assert "takes its source as a label only (ModuleInfo.source_is_label)" in results[name].detail
    assert "reads no path" in results["error code: PrepareDataset of a missing source"].detail
    assert results["determinism"].passed and results["error code: StreamBatches with batch_size 0"].passed
    text = {r.name: r for r in run_checks(ours)}  # a module that reads its path keeps every check
    assert text["encode/decode round trip"].passed and not any(r.passed is None for r in text.values())


def test_cli_prints_the_skips_of_a_label_source_module(ours: str):
    done = run_cli(ours, "--module", "sort")
    assert done.returncode == 0, done.stdout
    assert "SKIP  encode/decode round trip: does not apply: module 'sort'" in done.stdout
    assert "0 failed, 3 skipped" in done.stdout
