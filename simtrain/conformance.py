"""Contract checks any data service must pass: ``simtrain conformance HOST:PORT`` runs them.

The checks talk only the protocol in ``proto/``, so they judge our own service and any replacement
alike. Unless told a source already on the server, they upload a small generated corpus and prepare
it with the ``text`` module and the ``char`` tokenizer, then check listing, the listing of uploaded
sources (optional for a server: one without it is skipped), idempotent preparation,
batch shape/dtype/vocab bound, determinism, resume equivalence, rank disjointness, several batches
per message and the same-host shared-memory fast path (both optional for a server, but what it sends
must be the same batches), Encode/Decode, the tokenizer definition (optional: it must encode and decode
as Encode and Decode do), the rows GetRows shows (optional: see ``conformance_rows``), and the status
codes of bad requests (Retrieve's among them: optional, so UNIMPLEMENTED passes).

A module whose source is only a label (``ModuleInfo.source_is_label``, e.g. a synthetic task) reads
no path and makes its own text, so the path-error checks and the round trip of the uploaded corpus
are skipped for it, with the reason, rather than failed.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from simtrain import batch_wire, shm
from simtrain.batch_wire import DTYPES
from simtrain.conformance_rows import Unoffered, check_rows
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc

BATCH, BLOCK, STEPS = 4, 32, 6
# Codes a bad request may get; never UNKNOWN or INTERNAL.
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
MISSING = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
PATH_OUTSIDE = "PrepareDataset of '../' a path outside"
# Bad requests that are bad only for a module that reads its source as a path.
PATH_ERRORS = ("PrepareDataset of a missing source", PATH_OUTSIDE)
WORDS = (
    "river stone lantern orchard copper window meadow harbour thistle candle ferry willow "
    "saddle pepper violin marble anchor cobble basket feather"
).split()


@dataclass
class Result:
    name: str
    passed: bool | None  # None: skipped
    detail: str = ""

    @property
    def label(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


class CheckFailed(Exception):
    pass


class CheckSkipped(Exception):
    """An optional part of the protocol the server does not offer: the check is skipped, with the reason."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def corpus(num_lines: int = 1200, seed: int = 7) -> str:
    """A generated text (about 40 KB) with enough variety that random windows rarely coincide."""
    rng = random.Random(seed)
    lines = (
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "."
        for _ in range(num_lines)
    )
    return "\n".join(lines) + "\n"


def decode(t: pb.Tensor, what: str) -> np.ndarray:
    expect(t.dtype in DTYPES, f"{what} has dtype {t.dtype!r}, not one of {', '.join(DTYPES)}")
    a = np.frombuffer(t.data, dtype=DTYPES[t.dtype])
    expect(int(np.prod(t.shape)) == a.size, f"{what} has {a.size} values for shape {list(t.shape)}")
    return a.reshape(tuple(t.shape)).astype(np.int64)


class Conformance:
    def __init__(
        self, address: str, module: str = "text", source: str | None = None, timeout_s: float = 60
    ) -> None:
        self.address = address
        self.module = module
        self.source = source
        self.timeout_s = timeout_s
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.stub = pb_grpc.DataServiceStub(self.channel)
        # StreamBatches as the trainer calls it: the messages' bytes, for batch_wire to read.
        self.raw_batches = self.channel.unary_stream("/simtrain.data.v1.DataService/StreamBatches")
        self.text = corpus()
        self.info: pb.DatasetInfo | None = None
        self.source_is_label = False  # learned from ListModules
        self.uploaded: pb.UploadResult | None = None

    def close(self) -> None:
        self.channel.close()

    # Each check returns a detail line, or raises CheckFailed (or grpc.RpcError) with the reason.

    def check_health(self) -> str:
        status = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=self.timeout_s
        )
        expect(status.status == health_pb2.HealthCheckResponse.SERVING, f"health status is {status.status}")
        return "grpc.health.v1 says SERVING"

    def check_listing(self) -> str:
        modules = self.stub.ListModules(pb.ListModulesRequest(), timeout=self.timeout_s).modules
        names = [m.name for m in modules]
        expect(bool(names) and all(names), f"ListModules gave {names!r}")
        expect(self.module in names, f"module {self.module!r} is not offered (offered: {', '.join(names)})")
        self.source_is_label = next(m for m in modules if m.name == self.module).source_is_label
        return f"{len(names)} modules: {', '.join(names)}"

    def check_upload(self) -> str:
        data = self.text.encode()

        def chunks() -> Iterator[pb.UploadChunk]:
            yield pb.UploadChunk(filename="conformance corpus.txt", data=data[:10_000])
            for at in range(10_000, len(data), 10_000):
                yield pb.UploadChunk(data=data[at : at + 10_000])

        result = self.stub.UploadSource(chunks(), timeout=self.timeout_s)
        expect(result.size_bytes == len(data), f"size_bytes {result.size_bytes}, sent {len(data)}")
        expect(result.sha256 == hashlib.sha256(data).hexdigest(), "sha256 does not match the bytes sent")
        expect(bool(result.source), "no source name came back")
        self.source = result.source
        self.uploaded = result
        return f"stored as {result.source!r}"

    def check_source_listing(self) -> str:
        try:
            sources = self.stub.ListSources(pb.ListSourcesRequest(), timeout=self.timeout_s).sources
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise
            raise CheckSkipped("not offered (ListSources is optional; the gateway answers 501)") from None
        names = [s.name for s in sources]
        expect(names == sorted(set(names)), f"ListSources names are not sorted and unique: {names!r}")
        if self.uploaded is None:
            return f"{len(names)} sources"
        mine = next((s for s in sources if s.name == self.uploaded.source), None)
        expect(mine is not None, f"the uploaded {self.uploaded.source!r} is not listed (listed: {names!r})")
        sent = self.uploaded.size_bytes
        expect(mine.size_bytes == sent, f"the upload is listed with {mine.size_bytes} bytes, not {sent}")
        expect(mine.HasField("uploaded_at"), "the uploaded source is listed without uploaded_at")
        return f"{len(names)} sources, the upload among them with its size"

    def _prepare(self) -> pb.DatasetInfo:
        request = pb.PrepareDatasetRequest(
            module=self.module, source=self.source, tokenizer="char", packing="stream"
        )
        return self.stub.PrepareDataset(request, timeout=self.timeout_s)

    def check_prepare_idempotent(self) -> str:
        expect(self.source is not None, "no source to prepare (the upload failed and no --source was given)")
        first, second = self._prepare(), self._prepare()
        expect(bool(first.dataset_id), "PrepareDataset gave no dataset_id")
        expect(
            first.dataset_id == second.dataset_id, f"ids differ: {first.dataset_id} then {second.dataset_id}"
        )
        expect(
            first.vocab_size == second.vocab_size and list(first.splits) == list(second.splits),
            "infos differ",
        )
        expect(first.vocab_size > 0, "vocab_size is 0")
        splits = {s.name: s.num_tokens for s in first.splits}
        expect(splits.get("train", 0) > BLOCK and splits.get("val", 0) > BLOCK, f"splits too small: {splits}")
        got = self.stub.GetDataset(pb.GetDatasetRequest(dataset_id=first.dataset_id), timeout=self.timeout_s)
        expect(got.dataset_id == first.dataset_id, "GetDataset describes another dataset")
        listed = self.stub.ListDatasets(pb.ListDatasetsRequest(), timeout=self.timeout_s).datasets
        expect(first.dataset_id in {d.dataset_id for d in listed}, "ListDatasets does not list it")
        self.info = first
        return f"dataset {first.dataset_id}, vocab {first.vocab_size}, splits {splits}"

    def _request(self, **kw: object) -> pb.StreamBatchesRequest:
        expect(self.info is not None, "no dataset (preparation failed)")
        assert self.info is not None
        args = {
            "split": "train",
            "batch_size": BATCH,
            "block_size": BLOCK,
            "seed": 11,
            "num_steps": STEPS,
        } | kw
        return pb.StreamBatchesRequest(dataset_id=self.info.dataset_id, **args)

    def _stream(self, **kw: object) -> list[pb.Batch]:
        return list(self.stub.StreamBatches(self._request(**kw), timeout=self.timeout_s))

    def _raw_stream(self, **kw: object) -> Iterator[bytes]:
        return self.raw_batches(self._request(**kw).SerializeToString(), timeout=self.timeout_s)

    def check_batches(self) -> str:
        for split in ("train", "val"):
            batches = self._stream(split=split, start_step=5, num_steps=3)
            expect(
                [b.step for b in batches] == [5, 6, 7],
                f"{split} steps are {[b.step for b in batches]}, not 5..7",
            )
            for b in batches:
                x, y = decode(b.x, f"{split} x"), decode(b.y, f"{split} y")
                expect(
                    x.shape == y.shape == (BATCH, BLOCK),
                    f"shapes {x.shape} and {y.shape}, not {(BATCH, BLOCK)}",
                )
                vocab = self.info.vocab_size  # type: ignore[union-attr]
                expect(b.vocab_size == vocab, f"batch says vocab_size {b.vocab_size}, the dataset {vocab}")
                expect(0 <= x.min() and x.max() < vocab, f"x ids outside [0, {vocab})")
                real = y[y != -1]
                expect(
                    real.size > 0 and 0 <= real.min() and real.max() < vocab,
                    f"y ids outside [0, {vocab}) ∪ {{-1}}",
                )
        return f"[{BATCH}, {BLOCK}] int tensors, ids below vocab_size, train and val"

    def check_determinism(self) -> str:
        a, b = self._stream(), self._stream()
        expect(
            [m.SerializeToString() for m in a] == [m.SerializeToString() for m in b],
            "same request, other batches",
        )
        c = self._stream(seed=12)
        expect([m.x.data for m in a] != [m.x.data for m in c], "another seed gave the same batches")
        return f"{STEPS} batches identical on a second request; another seed differs"

    def check_resume(self) -> str:
        whole = self._stream()
        tail = self._stream(start_step=3, num_steps=STEPS - 3)
        expect(
            [m.SerializeToString() for m in tail] == [m.SerializeToString() for m in whole[3:]],
            "a stream from step 3 differs from steps 3.. of a stream from 0",
        )
        return "a stream started at step 3 equals the tail of one started at 0"

    def check_ranks(self) -> str:
        shards = [self._stream(rank=r, world_size=2, num_steps=3) for r in range(2)]
        for step in range(3):
            rows = [{decode(shards[r][step].x, "x")[i].tobytes() for i in range(BATCH)} for r in range(2)]
            expect(not rows[0] & rows[1], f"ranks 0 and 1 share rows at step {step}")
        return "ranks 0 and 1 of 2 share no rows over 3 steps"

    @staticmethod
    def _steps(
        messages: Iterable[bytes], most: int, reader: shm.ShmReader | None = None
    ) -> list[tuple[int, bytes, bytes, int]]:
        """(step, x, y, vocab_size) of each batch, read as the trainer reads them (messages of several
        batches split into theirs); with ``reader``, each slot is read as its message comes, as the
        server waits for that."""
        out = []
        for message in messages:
            try:
                b = batch_wire.decode(message, reader)
            except (batch_wire.BatchError, shm.ShmError) as e:
                raise CheckFailed(f"a message is unreadable: {e}") from None
            expect(len(b) <= most, f"a message holds {len(b)} batches, asked for at most {most}")
            expect(b.x.shape[1:] == (BATCH, BLOCK), f"batches of shape {b.x.shape[1:]}, not {(BATCH, BLOCK)}")
            x, y = b.x.astype(np.int64), b.y.astype(np.int64)
            out += [(b.step + i, x[i].tobytes(), y[i].tobytes(), b.vocab_size) for i in range(len(b))]
        return out

    def check_batches_per_message(self) -> str:
        one = self._steps(self._raw_stream(start_step=1, num_steps=STEPS - 1), 1)
        packed = list(self._raw_stream(start_step=1, num_steps=STEPS - 1, batches_per_message=2))
        expect(
            self._steps(packed, 2) == one,
            "asked for 2 batches per message, the batches differ from those sent one per message",
        )
        return f"{STEPS - 1} batches asked 2 to a message came in {len(packed)} messages, the same batches"

    def check_shm_batches(self) -> str:
        """Offered the fast path, a server may stream bytes; the slots it fills must hold the same batches."""
        with shm.probe() as probe:
            if probe is None:
                return "not tried: this machine has no /dev/shm"
            reader = shm.ShmReader()
            try:
                messages = self._raw_stream(
                    start_step=1, num_steps=STEPS - 1, batches_per_message=2, shm_probe=probe
                )
                got = self._steps(messages, 2, reader)
                slots = len(reader.slots)
            finally:
                reader.close()
        want = self._steps(self._raw_stream(start_step=1, num_steps=STEPS - 1), 1)
        expect(got == want, "the batches sent through shared memory differ from those sent as bytes")
        if not slots:
            return "not offered (the server streamed bytes): fine"
        return f"{len(got)} batches through /dev/shm slots ({slots} files), the same as the byte path's"

    def check_encode_decode(self) -> str:
        expect(self.info is not None, "no dataset (preparation failed)")
        dataset_id = self.info.dataset_id  # type: ignore[union-attr]
        text = self.text[:200]
        tokens = self.stub.Encode(
            pb.EncodeRequest(dataset_id=dataset_id, text=text), timeout=self.timeout_s
        ).tokens
        expect(len(tokens) > 0 and max(tokens) < self.info.vocab_size, "Encode gave ids outside the vocab")  # type: ignore[union-attr]
        back = self.stub.Decode(
            pb.DecodeRequest(dataset_id=dataset_id, tokens=tokens), timeout=self.timeout_s
        ).text
        expect(back == text, f"Decode(Encode(text)) gave {back[:40]!r}…, not the text")
        return f"{len(text)} characters → {len(tokens)} tokens → the same text"

    def check_tokenizer_definition(self) -> str:
        """GetTokenizer (optional) gives a tokenizer that decodes and encodes as Decode and Encode do."""
        from data_service import tokenizers  # the reference reader of the documented definitions

        expect(self.info is not None, "no dataset (preparation failed)")
        dataset_id, vocab = self.info.dataset_id, self.info.vocab_size  # type: ignore[union-attr]
        try:
            definition = self.stub.GetTokenizer(
                pb.GetTokenizerRequest(dataset_id=dataset_id), timeout=self.timeout_s
            )
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise
            raise CheckSkipped(
                "not offered (GetTokenizer is optional; checkpoints then carry none)"
            ) from None
        try:
            tokenizer = tokenizers.load({"kind": definition.kind, "state": json.loads(definition.state_json)})
        except Exception as e:  # whatever a malformed definition makes the reader raise
            raise CheckFailed(f"the {definition.kind!r} definition cannot be read: {e}") from None
        expect(tokenizer.vocab_size == vocab, f"it has {tokenizer.vocab_size} tokens, the dataset {vocab}")
        ids = decode(self._stream(num_steps=1)[0].x, "x")[0].tolist()
        text = self.stub.Decode(
            pb.DecodeRequest(dataset_id=dataset_id, tokens=ids), timeout=self.timeout_s
        ).text
        expect(tokenizer.decode(ids) == text, "it decodes a batch row otherwise than Decode does")
        served = self.stub.Encode(pb.EncodeRequest(dataset_id=dataset_id, text=text), timeout=self.timeout_s)
        expect(
            tokenizer.encode(text).tolist() == list(served.tokens), "it encodes otherwise than Encode does"
        )
        return f"a {definition.kind} tokenizer of {vocab} tokens that decodes and encodes as the server does"

    def check_rows(self) -> str:
        expect(self.info is not None, "no dataset (preparation failed)")
        assert self.info is not None
        try:
            return check_rows(self.stub, self.info, BLOCK, self.timeout_s, CheckFailed, self.module == "text")
        except Unoffered:
            raise CheckSkipped("not offered (GetRows is optional; the gateway answers 501)") from None

    def bad_requests(self) -> list[tuple[str, Callable[[], object], set[grpc.StatusCode]]]:
        dataset_id = self.info.dataset_id if self.info else "0123456789abcdef"
        missing = "00000000deadbeef"

        def stream(**kw: object) -> Callable[[], object]:
            args = {"dataset_id": dataset_id, "split": "train", "batch_size": 2, "block_size": 8} | kw
            return lambda: list(
                self.stub.StreamBatches(pb.StreamBatchesRequest(**args), timeout=self.timeout_s)
            )

        def prepare(**kw: str) -> Callable[[], object]:
            args = {"module": self.module, "source": self.source or "x.txt", "tokenizer": "char"} | kw
            return lambda: self.stub.PrepareDataset(pb.PrepareDatasetRequest(**args), timeout=self.timeout_s)

        return [
            (
                "GetDataset of an unknown id",
                lambda: self.stub.GetDataset(pb.GetDatasetRequest(dataset_id=missing)),
                MISSING,
            ),
            ("StreamBatches of an unknown id", stream(dataset_id=missing), MISSING),
            ("StreamBatches with split 'test'", stream(split="test"), REFUSED),
            ("StreamBatches with batch_size 0", stream(batch_size=0), REFUSED),
            ("StreamBatches with rank 2 of 2", stream(rank=2, world_size=2), REFUSED),
            ("StreamBatches with a negative start_step", stream(start_step=-1), REFUSED),
            ("PrepareDataset of an unknown module", prepare(module="no-such-module"), REFUSED | MISSING),
            ("PrepareDataset of a missing source", prepare(source="no-such-file.txt"), MISSING),
            (
                PATH_OUTSIDE,
                prepare(source="../outside.txt"),
                REFUSED | MISSING | {grpc.StatusCode.PERMISSION_DENIED},
            ),
            (
                "Decode of an unknown id",
                lambda: self.stub.Decode(pb.DecodeRequest(dataset_id=missing, tokens=[0])),
                MISSING,
            ),
            (
                "Retrieve for a dataset prepared without a retrieval corpus",
                lambda: self.stub.Retrieve(pb.RetrieveRequest(dataset_id=dataset_id, prompts=["a"])),
                {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED},  # Retrieve is optional
            ),
        ]

    def run(self) -> Iterator[Result]:
        checks: list[tuple[str, Callable[[], str]]] = [
            ("health", self.check_health),
            ("listing", self.check_listing),
        ]
        if self.source is None:
            checks.append(("upload", self.check_upload))
        checks += [
            ("source listing", self.check_source_listing),
            ("prepare idempotency", self.check_prepare_idempotent),
            ("batch shape, dtype and vocab bound", self.check_batches),
            ("determinism", self.check_determinism),
            ("resume equivalence", self.check_resume),
            ("rank disjointness", self.check_ranks),
            ("batches per message", self.check_batches_per_message),
            ("shared-memory fast path", self.check_shm_batches),
            ("encode/decode round trip", self.check_encode_decode),
            ("tokenizer definition", self.check_tokenizer_definition),
            ("rows as training sees them", self.check_rows),
        ]
        if self.source is not None and not any(name == "upload" for name, _ in checks):
            yield Result("upload", None, f"using the source {self.source!r} already on the server")
        for name, check in checks:
            if self.source_is_label and name == "encode/decode round trip":
                yield Result(
                    name,
                    None,
                    self._label_reason(
                        "makes its own text, so its vocabulary need not cover the uploaded corpus"
                    ),
                )
                continue
            try:
                yield Result(name, True, check())
            except CheckFailed as e:
                yield Result(name, False, str(e))
            except CheckSkipped as e:
                yield Result(name, None, str(e))
            except grpc.RpcError as e:
                yield Result(name, False, f"{e.code().name}: {e.details()}")  # type: ignore[attr-defined]
        for what, call, allowed in self.bad_requests():
            if self.source_is_label and what in PATH_ERRORS:
                yield Result(
                    f"error code: {what}",
                    None,
                    self._label_reason("reads no path, so a missing or outside one is no error"),
                )
                continue
            yield self._error_check(what, call, allowed)

    def _label_reason(self, why: str) -> str:
        """Why a check is skipped for a module whose source is a label."""
        return (
            f"does not apply: module {self.module!r} takes its source as a label only "
            f"(ModuleInfo.source_is_label) and {why}"
        )

    def _error_check(self, what: str, call: Callable[[], object], allowed: set[grpc.StatusCode]) -> Result:
        name = f"error code: {what}"
        want = " or ".join(sorted(c.name for c in allowed))
        try:
            call()
        except grpc.RpcError as e:
            code, details = e.code(), e.details()  # type: ignore[attr-defined]
            if code in allowed and details:
                return Result(name, True, f"{code.name}: {details}")
            if not details:
                return Result(name, False, f"{code.name} without a message")
            return Result(name, False, f"{code.name} ({details}), want {want}")
        return Result(name, False, f"succeeded, want {want}")


def run_checks(
    address: str, module: str = "text", source: str | None = None, timeout_s: float = 60
) -> list[Result]:
    suite = Conformance(address, module, source, timeout_s)
    try:
        return list(suite.run())
    finally:
        suite.close()
