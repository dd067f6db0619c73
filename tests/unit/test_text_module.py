"""The text module and source resolution: every refusal names the file and says why."""

from pathlib import Path

import pytest

from data_service.errors import DataError, NotFoundError
from data_service.modules import discover
from data_service.modules.base import resolve_source
from data_service.modules.text import TextModule


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "story.txt").write_text("Once upon a time.\n", encoding="utf-8")
    return root


def load(root: Path, source: str) -> list[str]:
    return TextModule().read(resolve_source(root, source), {})


def test_reads_one_document(root: Path):
    assert load(root, "story.txt") == ["Once upon a time.\n"]


def test_is_discovered_through_the_entry_point():
    modules = discover()
    assert isinstance(modules["text"], TextModule)


def test_not_found(root: Path):
    with pytest.raises(NotFoundError, match=r"source 'missing\.txt' not found"):
        load(root, "missing.txt")


def test_directory(root: Path):
    with pytest.raises(DataError, match=r"sub is a directory, not a text file"):
        load(root, "sub")


def test_dot_dot_traversal(root: Path, tmp_path: Path):
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    with pytest.raises(DataError, match=r"source '\.\./secret\.txt' is outside the data root: '\.\.'"):
        load(root, "../secret.txt")
    with pytest.raises(DataError, match=r"source 'sub/\.\./\.\./secret\.txt' is outside the data root"):
        load(root, "sub/../../secret.txt")


def test_absolute_path(root: Path):
    absolute = str(root / "story.txt")
    with pytest.raises(DataError, match="is an absolute path") as info:
        load(root, absolute)
    assert absolute in str(info.value)


def test_symlink_out_of_the_root(root: Path, tmp_path: Path):
    (tmp_path / "outside.txt").write_text("outside", encoding="utf-8")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    (root / "linkdir").symlink_to(tmp_path)
    with pytest.raises(DataError, match=r"source 'link\.txt' is outside the data root: a symbolic link"):
        load(root, "link.txt")
    with pytest.raises(DataError, match=r"source 'linkdir/outside\.txt' is outside the data root"):
        load(root, "linkdir/outside.txt")


def test_symlink_inside_the_root_is_fine(root: Path):
    (root / "alias.txt").symlink_to(root / "story.txt")
    assert load(root, "alias.txt") == ["Once upon a time.\n"]


def test_invalid_utf8_names_the_byte_and_offset(root: Path):
    (root / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt is not valid UTF-8: byte 0xe9 at offset 3"):
        load(root, "latin1.txt")


def test_empty_and_whitespace_only(root: Path):
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.txt").write_text(" \n\t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        load(root, "empty.txt")
    with pytest.raises(DataError, match=r"blank\.txt holds only whitespace"):
        load(root, "blank.txt")


def test_empty_source_name(root: Path):
    with pytest.raises(DataError, match="source is empty"):
        load(root, "")
