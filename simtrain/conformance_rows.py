"""The conformance check of GetRows (optional for a server): a split's rows as the protocol defines them.

For a stream-packed dataset, row i is the window of block_size + 1 tokens at token i * block_size, so
consecutive rows share one token and together cover the split; each token's text is that token decoded
alone; the first token of a row is never trained and a stream row has no padding. Bad requests are
refused with a status code and a message, like every other call's.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc

ROWS = 3
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
MISSING = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}


class Unoffered(Exception):
    """The server answers GetRows with UNIMPLEMENTED."""


def check_rows(
    stub: pb_grpc.DataServiceStub,
    info: pb.DatasetInfo,
    block: int,
    timeout_s: float,
    fail: Callable[[str], Exception],
    all_trained: bool,
) -> str:
    """A detail line, or ``fail(reason)`` raised; ``all_trained``: the dataset masks no target (plain
    text), so every token of a row but the first must be trained."""

    def expect(condition: bool, message: str) -> None:
        if not condition:
            raise fail(message)

    def rows(**kw: object) -> pb.GetRowsResponse:
        args = {"dataset_id": info.dataset_id, "split": "train", "start": 0, "count": ROWS} | kw
        return stub.GetRows(pb.GetRowsRequest(block_size=block, **args), timeout=timeout_s)

    try:
        answer = rows()
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
            raise Unoffered from None
        raise
    train = next(s.num_tokens for s in info.splits if s.name == "train")
    want_total = -(-(train - 1) // block)
    expect(answer.packing == "stream", f"GetRows says packing {answer.packing!r}, the dataset is 'stream'")
    expect(answer.total_rows == want_total, f"total_rows is {answer.total_rows}, not {want_total}")
    expect(len(answer.rows) == ROWS, f"asked for {ROWS} rows, got {len(answer.rows)}")
    for i, row in enumerate(answer.rows):
        ids = [t.id for t in row.tokens]
        expect(
            row.index == i and row.token_offset == i * block,
            f"row {i} is numbered {row.index} at token {row.token_offset}, not row {i} at token {i * block}",
        )
        expect(len(ids) == block + 1, f"row {i} has {len(ids)} tokens, not block_size + 1 = {block + 1}")
        expect(all(0 <= t < info.vocab_size for t in ids), f"row {i} has ids outside [0, {info.vocab_size})")
        roles = [t.role for t in row.tokens]
        expect(
            roles[0] == pb.TOKEN_ROLE_MASKED,
            f"row {i}'s first token is {pb.TokenRole.Name(roles[0])}, not MASKED",
        )
        expect(pb.TOKEN_ROLE_PADDING not in roles, f"stream row {i} has padding")
        if all_trained:
            expect(set(roles[1:]) == {pb.TOKEN_ROLE_TRAINED}, f"row {i} masks tokens of plain text")
        for t in row.tokens:
            alone = stub.Decode(
                pb.DecodeRequest(dataset_id=info.dataset_id, tokens=[t.id]), timeout=timeout_s
            )
            expect(t.text == alone.text, f"token {t.id}'s text is {t.text!r}, Decode says {alone.text!r}")
        if i:
            expect(
                ids[0] == answer.rows[i - 1].tokens[-1].id, f"row {i} does not start where row {i - 1} ends"
            )
    past = rows(start=want_total)
    expect(not past.rows, f"rows from start {want_total} (past the end) came back")

    bad: list[tuple[str, dict[str, object], set[grpc.StatusCode]]] = [
        ("an unknown id", {"dataset_id": "00000000deadbeef"}, MISSING),
        ("split 'test'", {"split": "test"}, REFUSED),
        ("a negative start", {"start": -1}, REFUSED),
        ("count 0", {"count": 0}, REFUSED),
    ]
    for what, kw, allowed in bad:
        try:
            rows(**kw)
        except grpc.RpcError as e:
            code, details = e.code(), e.details()  # type: ignore[attr-defined]
            expect(code in allowed and bool(details), f"GetRows of {what} gave {code.name} ({details!r})")
            continue
        raise fail(f"GetRows of {what} succeeded")
    return f"{ROWS} rows of {block + 1} tokens, consecutive windows of train; {len(bad)} bad requests refused"
