"""A data module from outside simtrain: each non-empty line of a text file → the line reversed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from data_service.errors import DataError
from data_service.modules.base import DataModule, Pair, Report


class ReverseModule(DataModule):
    name = "reverse"
    description = "Each line of a UTF-8 file becomes a pair: the line → the line reversed."

    def read(self, path: Path | None, options: Mapping[str, str], report: Report) -> Iterator[Pair]:
        assert path is not None
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise DataError(f"{path} has no lines")
        report.count("lines", len(lines))
        for line in lines:
            yield Pair(line + "|", line[::-1])
