"""Hypothesis-made garbage at every data module and every gRPC method: only clean errors come back.

A data module may accept its input or refuse it with a :class:`DataError` naming the problem; anything else
(a KeyError, a sqlite3 error, a UnicodeDecodeError) is a bug. A gRPC method may answer or fail with a status
a client can act on; UNKNOWN or INTERNAL is a bug, and the server must still serve afterwards.

Examples are derandomised so CI sees the same ones each run; ``SIMTRAIN_FUZZ_EXAMPLES`` asks for more.
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_service import modules
from data_service.errors import DataError
from data_service.options import all_options
from data_service.server import SERVICE, SERVICE_NAME, serve
from data_service.store import Store
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.settings import Settings
from tests.anki_decks import genanki_deck
from tests.integration.trainer_support import DataService

EXAMPLES = int(os.environ.get("SIMTRAIN_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
MODULES = modules.discover()
# Statuses that tell a client what it did wrong; a fuzzed request may get any of these, or succeed.
CLEAN = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,  # a legitimate request that takes long (an endless stream is cut)
    grpc.StatusCode.CANCELLED,
}
WORDS = [
    "tiny.txt",
    "../tiny.txt",
    "/etc/passwd",
    "a\0b",
    "",
    "text",
    "jsonl",
    "anki",
    "sort",
    "add",
    "char",
    "byte",
    "bpe",
    "stream",
    "pairs",
    "train",
    "val",
    "test",
    "vocab_size",
    "num_examples",
    "length",
    "overlong",
    "reject",
    "token_dtype",
    "uint16",
    "separator",
    "val_fraction",
    "0",
    "1",
    "-1",
    "1e9",
]
text = st.one_of(st.sampled_from(WORDS), st.text(max_size=24))


def options_for(module_name: str) -> st.SearchStrategy[dict[str, str]]:
    names = [o.name for o in all_options(MODULES[module_name])]
    values = st.one_of(text, st.integers(-3, 300).map(str), st.floats(allow_nan=True).map(str))
    return st.dictionaries(st.one_of(st.sampled_from(names), st.text(max_size=8)), values, max_size=4)


# -- modules --------------------------------------------------------------------------------------


def jsonl_lines() -> st.SearchStrategy[bytes]:
    value = st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.integers(), max_size=3))
    obj = st.dictionaries(st.sampled_from(["text", "prompt", "completion", "x"]), value, max_size=3)
    line = st.one_of(obj.map(lambda o: __import__("json").dumps(o)), st.text(max_size=40))
    return st.lists(line, max_size=8).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))


@pytest.fixture(scope="module")
def deck_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return genanki_deck(tmp_path_factory.mktemp("deck") / "deck.apkg").read_bytes()


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with a few bytes overwritten, or cut short: a damaged file of the right kind."""
    flips = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=8)

    def apply(edits: list[tuple[int, int]]) -> bytes:
        out = bytearray(data)
        for at, value in edits:
            out[at] = value
        return bytes(out)

    return st.one_of(flips.map(apply), st.integers(0, len(data)).map(lambda n: data[:n]))


def zipped(member: str) -> st.SearchStrategy[bytes]:
    """A zip holding ``member`` with arbitrary bytes in it."""

    def pack(content: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr(member, content)
        return buffer.getvalue()

    return st.binary(max_size=2048).map(pack)


def sources(deck: bytes) -> dict[str, st.SearchStrategy[bytes]]:
    raw = st.binary(max_size=2048)
    return {
        "text": st.one_of(raw, st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))),
        "jsonl": st.one_of(raw, jsonl_lines()),
        "anki": st.one_of(raw, mutated(deck), zipped("collection.anki2"), zipped("collection.anki21b")),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("prepared"))


@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_every_module_refuses_garbage_cleanly(
    module_name: str, store: Store, deck_bytes: bytes, tmp_path: Path
):
    module = MODULES[module_name]
    content = sources(deck_bytes).get(module_name, st.binary(max_size=1024))

    @FUZZ
    @given(
        data=content,
        options=options_for(module_name),
        tokenizer=st.sampled_from(["char", "byte", "bpe", "x"]),
        packing=st.sampled_from(["stream", "pairs", "x"]),
    )
    def check(data: bytes, options: dict[str, str], tokenizer: str, packing: str) -> None:
        name = f"src-{random.getrandbits(64):x}.in"
        (tmp_path / name).write_bytes(data)
        try:
            store.prepare(module, tmp_path, name, tokenizer=tokenizer, packing=packing, options=options)
        except DataError:
            pass

    check()


# -- gRPC methods ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(data_service: DataService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A data service of its own (uploads land in its data root), and a dataset id it knows."""
    root = tmp_path_factory.mktemp("grpc-fuzz")
    (root / "data").mkdir()
    (root / "data" / "tiny.txt").write_bytes((data_service.settings.data_root / "tiny.txt").read_bytes())
    settings_ = Settings(data_root=root / "data", state_dir=root / "var", grpc_max_message_bytes=4 << 20)
    grpc_server, port = serve(settings_, port=0, upload_limit_bytes=1 << 20)
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        stub = channel.unary_unary(f"/{SERVICE_NAME}/PrepareDataset")
        request = pb.PrepareDatasetRequest(module="text", source="tiny.txt")
        dataset_id = pb.DatasetInfo.FromString(stub(request.SerializeToString(), timeout=60)).dataset_id
    yield address, dataset_id
    grpc_server.stop(None)


def field_values(field: FieldDescriptor, dataset_id: str, depth: int) -> st.SearchStrategy:
    t = FieldDescriptor
    if field.type == t.TYPE_STRING:
        return st.one_of(text, st.just(dataset_id))
    if field.type == t.TYPE_BYTES:
        return st.binary(max_size=256)
    if field.type == t.TYPE_BOOL:
        return st.booleans()
    if field.type in (t.TYPE_FLOAT, t.TYPE_DOUBLE):
        return st.floats(allow_nan=True, width=32 if field.type == t.TYPE_FLOAT else 64)
    if field.type == t.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    if field.type == t.TYPE_MESSAGE:
        return messages(field.message_type, dataset_id, depth + 1)
    signed = field.type in (
        t.TYPE_INT32,
        t.TYPE_INT64,
        t.TYPE_SINT32,
        t.TYPE_SINT64,
        t.TYPE_SFIXED32,
        t.TYPE_SFIXED64,
    )
    bits = (
        32
        if field.type in (t.TYPE_INT32, t.TYPE_UINT32, t.TYPE_SINT32, t.TYPE_FIXED32, t.TYPE_SFIXED32)
        else 64
    )
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return st.one_of(st.integers(0, 64), st.integers(low, high))


def messages(descriptor, dataset_id: str, depth: int = 0) -> st.SearchStrategy[bytes]:
    """Serialised messages of type ``descriptor`` with arbitrary (but well-typed) field values."""
    cls = getattr(pb, descriptor.name, None) or pb.__dict__[descriptor.name]
    if depth > 2:
        return st.just(cls())
    fields = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            fields[field.name] = st.dictionaries(
                field_values(key, dataset_id, depth), field_values(value, dataset_id, depth), max_size=3
            )
        elif field.is_repeated:
            fields[field.name] = st.lists(field_values(field, dataset_id, depth), max_size=4)
        else:
            fields[field.name] = field_values(field, dataset_id, depth)

    def build(values: dict) -> object:
        message = cls()
        for name, value in values.items():
            target = getattr(message, name)
            if isinstance(value, dict):
                for k, v in value.items():
                    (target[k].CopyFrom(v) if hasattr(target[k], "CopyFrom") else target.__setitem__(k, v))
            elif isinstance(value, list):
                for v in value:
                    target.add().CopyFrom(v) if hasattr(target, "add") else target.append(v)
            elif hasattr(target, "CopyFrom"):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    built = st.fixed_dictionaries({}, optional=fields).map(build)
    return built if depth else built.map(lambda m: m.SerializeToString())


def requests(method, dataset_id: str) -> st.SearchStrategy[bytes]:
    """Well-typed messages, and bytes that are no message at all."""
    return st.one_of(messages(method.input_type, dataset_id), st.binary(max_size=64))


def call(channel: grpc.Channel, method, payload: list[bytes]) -> None:
    path = f"/{SERVICE_NAME}/{method.name}"
    try:
        if method.client_streaming:
            channel.stream_unary(path)(iter(payload), timeout=30)
        elif method.server_streaming:
            stream = channel.unary_stream(path)(payload[0], timeout=30)
            for _, _ in zip(range(3), stream, strict=False):  # a few batches, then hang up
                pass
            stream.cancel()
        else:
            channel.unary_unary(path)(payload[0], timeout=30)
    except grpc.RpcError as e:
        assert e.code() in CLEAN, f"{method.name} answered {e.code().name}: {e.details()}"


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_every_grpc_method_answers_garbage_with_a_clean_status(method, server: tuple[str, str]):
    address, dataset_id = server
    payloads = st.lists(
        requests(method, dataset_id), min_size=1, max_size=4 if method.client_streaming else 1
    )
    with grpc.insecure_channel(address) as channel:

        @FUZZ
        @given(payload=payloads)
        def check(payload: list[bytes]) -> None:
            call(channel, method, payload)

        check()
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
