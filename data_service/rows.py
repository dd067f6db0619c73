"""GetRows: the rows of a split as training sees them, each token decoded and marked trained or not.

Rows are built by the functions that build batches (``sampling.windows_at`` for stream packing,
``sampling.pair_rows`` for pairs), and a token's role is read off the targets they make: a token is
trained exactly where the batch's target for it is not -1. So whatever loss masking a batch applies, a
person sees here.

Which rows: stream packing gives consecutive windows, each starting at the last target of the one
before (the last window moved back to end at the split's end), so paging through them shows every
token once as a target. Pairs packing gives one row per example, in the order they were prepared.
"""

from __future__ import annotations

import numpy as np

from data_service.errors import DataError
from data_service.sampling import ignore_untrained, pair_rows, windows_at
from data_service.store import SPLITS, Dataset
from data_service.tokenizers.base import Tokenizer
from simtrain.data.v1 import data_service_pb2 as pb

MAX_ROWS = 256
# The job schema's largest block size.
MAX_BLOCK_SIZE = 8192
# Tokens one answer may hold (rows x (block_size + 1)): a few MiB of message at most.
MAX_TOKENS = 1 << 18


def check_rows_request(request: pb.GetRowsRequest) -> None:
    """Refuse a GetRows request that is wrong on its face, naming the field."""
    if request.split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {request.split!r}", "split")
    if request.start < 0:
        raise DataError(f"start must not be negative, got {request.start}", "start")
    if not 1 <= request.count <= MAX_ROWS:
        raise DataError(f"count must be from 1 to {MAX_ROWS}, got {request.count}", "count")
    if not 1 <= request.block_size <= MAX_BLOCK_SIZE:
        raise DataError(
            f"block_size must be from 1 to {MAX_BLOCK_SIZE}, got {request.block_size}", "block_size"
        )
    if request.count * (request.block_size + 1) > MAX_TOKENS:
        raise DataError(
            f"count x (block_size + 1) must be at most {MAX_TOKENS} tokens, got "
            f"{request.count} x {request.block_size + 1}: ask for fewer rows at a time",
            "count",
        )


def stream_row_starts(num_tokens: int, block_size: int, start: int, count: int) -> tuple[np.ndarray, int]:
    """(window starts of rows start .. start+count, the split's number of rows) for stream packing."""
    if num_tokens == 0:
        return np.zeros(0, dtype=np.int64), 0
    last = num_tokens - 1 - block_size  # the last window that fits
    if last < 0:
        raise DataError(
            f"block_size {block_size} is too large for this split, which has {num_tokens} tokens: a row "
            f"needs block_size + 1, so use block_size {num_tokens - 1} or less",
            "block_size",
        )
    total = -(-(num_tokens - 1) // block_size)  # rows whose targets cover tokens 1 .. num_tokens - 1
    rows = np.arange(start, min(start + count, total), dtype=np.int64)
    return np.minimum(rows * block_size, last), total


def roles(y: np.ndarray, length: int) -> list[int]:
    """The role of each of a row's len(y) + 1 tokens, given its targets y and its real tokens' count:
    token j > 0 is the target of position j - 1, so it is trained where y[j - 1] is not -1."""
    out = [pb.TOKEN_ROLE_MASKED]  # the first token is never a target
    for j, target in enumerate(y.tolist(), start=1):
        if j >= length:
            out.append(pb.TOKEN_ROLE_PADDING)
        else:
            out.append(pb.TOKEN_ROLE_TRAINED if target != -1 else pb.TOKEN_ROLE_MASKED)
    return out


class _Pieces:
    """Each token's text decoded alone, remembered: a row repeats its tokens often."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.seen: dict[int, str] = {}

    def __call__(self, token: int) -> str:
        if token not in self.seen:
            self.seen[token] = self.tok.decode([token])
        return self.seen[token]


def _row(index: int, offset: int, ids: np.ndarray, y: np.ndarray, length: int, pieces: _Pieces) -> pb.Row:
    base = pieces.tok.base_vocab_size
    return pb.Row(
        index=index,
        token_offset=offset,
        tokens=[
            pb.RowToken(id=t, text=pieces(t), role=role, special=t >= base)
            for t, role in zip(ids.tolist(), roles(y, length), strict=True)
        ],
    )


def get_rows(ds: Dataset, request: pb.GetRowsRequest) -> pb.GetRowsResponse:
    """Rows start .. start + count of the split (fewer at its end), built as batches build them."""
    check_rows_request(request)
    split, block, start = request.split, request.block_size, request.start
    tokens, mask = ds.tokens(split), ds.mask(split)
    pieces = _Pieces(ds.tokenizer())
    answer = pb.GetRowsResponse(packing=ds.packing)
    if ds.packing != "pairs":
        starts, answer.total_rows = stream_row_starts(len(tokens), block, start, request.count)
        if not len(starts):
            return answer
        windows = windows_at(tokens, starts, block).astype(np.int64)
        y = windows[:, 1:]  # the targets, as StreamBatches splits each window and masks them
        if mask is not None:
            y = ignore_untrained(y, windows_at(mask, starts, block)[:, 1:])
        for i, at in enumerate(starts.tolist()):
            answer.rows.append(_row(start + i, at, windows[i], y[i], block + 1, pieces))
        return answer

    examples = ds.rows(split)
    answer.total_rows = len(examples)
    chosen = np.arange(start, min(start + request.count, len(examples)), dtype=np.int64)
    if not len(chosen):
        return answer
    pad = ds.meta["end_token"]
    x, y = pair_rows(tokens, examples, chosen, block_size=block, pad=pad, mask=mask)
    for i, example in enumerate(chosen.tolist()):
        at, _, total = (int(v) for v in examples[example])
        length = min(total, block + 1)
        # The inputs as the batch has them; the last token is only ever a target.
        last = int(tokens[at + block]) if length > block else pad
        ids = np.append(x[i], last)
        row = _row(example, at, ids, y[i], length, pieces)
        row.truncated = total > block + 1
        answer.rows.append(row)
    return answer
