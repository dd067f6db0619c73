"""The ``text`` module: one UTF-8 text file is one document."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from data_service.errors import DataError, NotFoundError
from data_service.modules.base import DataModule


class TextModule(DataModule):
    name = "text"
    description = "One UTF-8 text file under the data root, used as a single document."

    def read(self, path: Path, options: Mapping[str, str]) -> list[str]:
        if path.is_dir():
            raise DataError(f"{path} is a directory, not a text file")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{path} not found") from None
        except OSError as e:
            raise DataError(f"{path} cannot be read: {e.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} ({e.reason})"
            ) from None
        if not text.strip():
            raise DataError(f"{path} is empty" if not data else f"{path} holds only whitespace")
        return [text]
