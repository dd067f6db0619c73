"""The text module and source resolution: every refusal names the file and says why."""

from pathlib import Path

import pytest

from data_service.errors import DataError, NotFoundError
from data_service.modules import discover
from data_service.modules.base import Report, Text, resolve_source
from data_service.modules.text import MERGED_CHARS, PIECE_CHARS, TextModule


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "story.txt").write_text("Once upon a time.\n", encoding="utf-8")
    return root


def read(root: Path, source: str) -> list[Text]:
    return list(TextModule().read(resolve_source(root, source), {}, Report()))


def load(root: Path, source: str) -> list[str]:
    """The documents: pieces joined back up at each new document."""
    docs: list[str] = []
    for piece in read(root, source):
        if piece.new_doc:
            docs.append("")
        docs[-1] += piece.text
    return docs


def test_reads_one_document(root: Path):
    assert load(root, "story.txt") == ["Once upon a time.\n"]


def test_pieces_are_paragraphs_that_join_back_to_the_file(root: Path):
    long_line = "x" * (3 * PIECE_CHARS + 5) + "\n"
    text = "First para,\nstill first.\n\n\nSecond para.\n" + "line\n" * 300 + "\n" + long_line + "end"
    (root / "book.txt").write_text(text, encoding="utf-8")
    pieces = read(root, "book.txt")
    assert "".join(p.text for p in pieces) == text
    assert [p.new_doc for p in pieces] == [True] + [False] * (len(pieces) - 1)
    assert pieces[0].text == "First para,\nstill first.\n\n\n"
    assert pieces[1].text.startswith("Second para.\n")
    assert all(len(p.text) <= 2 * PIECE_CHARS for p in pieces)
    assert len(pieces) > 5


def licence_like(paragraphs: int = 12) -> str:
    """Text laid out as licence files are: a blank first line, a centred title, then paragraphs of
    wrapped lines, some exactly PIECE_CHARS long, each followed by one or two blank lines."""
    line = "x" * 63 + "\n"  # 64 characters: 8 lines make a paragraph of exactly PIECE_CHARS
    parts = ["\n", "                    THE MADE-UP LICENCE\n", "\n"]
    for i in range(paragraphs):
        parts.append(line * (PIECE_CHARS // len(line) if i % 2 else 3))
        parts.append("\n" * (1 + i % 3 // 2))
    return "".join(parts)


def test_clean_text_gives_no_whitespace_only_pieces(root: Path):
    text = licence_like()
    (root / "licence.txt").write_text(text, encoding="utf-8")
    pieces = read(root, "licence.txt")
    assert "".join(p.text for p in pieces) == text
    assert all(p.text.strip() for p in pieces)
    assert pieces[0].text.startswith("\n ") and len(pieces) > 6


def test_a_run_of_blank_lines_too_long_to_join_stays_bounded(root: Path):
    text = "Start.\n" + "\n" * (20 * PIECE_CHARS) + "End.\n"
    (root / "gap.txt").write_text(text, encoding="utf-8")
    pieces = read(root, "gap.txt")
    assert "".join(p.text for p in pieces) == text
    assert all(len(p.text) <= MERGED_CHARS for p in pieces)
    assert any(not p.text.strip() for p in pieces)  # whitespace that much is worth its warning


def test_a_directory_of_text_files_is_one_document_each(root: Path):
    (root / "sub" / "b.md").write_text("# Bee\n", encoding="utf-8")
    (root / "sub" / "a.txt").write_text("Ay.\n", encoding="utf-8")
    (root / "sub" / "skip.json").write_text("{}", encoding="utf-8")
    assert load(root, "sub") == ["Ay.\n", "# Bee\n"]


def test_is_discovered_through_the_entry_point():
    modules = discover()
    assert isinstance(modules["text"], TextModule)


def test_not_found(root: Path):
    with pytest.raises(NotFoundError, match=r"source 'missing\.txt' not found"):
        load(root, "missing.txt")


def test_directory_without_text_files(root: Path):
    with pytest.raises(DataError, match=r"sub is a directory with no \.txt or \.md files in it"):
        load(root, "sub")


def test_link_out_of_a_directory_is_refused(root: Path, tmp_path: Path):
    (tmp_path / "outside.txt").write_text("outside", encoding="utf-8")
    (root / "sub" / "in.txt").write_text("inside", encoding="utf-8")
    (root / "sub" / "out.txt").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(DataError, match=r"out\.txt is a symbolic link that leads out of"):
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


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("cards.csv", "read it with module 'table' (option text_column names the column of text)"),
        ("cards.TSV", "read it with module 'table'"),
        ("rows.parquet", "read it with module 'table'"),
        ("deck.apkg", "read it with module 'anki'"),
    ],
)
def test_a_table_or_a_deck_is_not_read_as_prose(root: Path, name: str, advice: str):
    (root / name).write_text("front,back\nHund,dog\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=f"{name} is a {name[name.index('.') :].lower()} file, not prose"
    ) as e:
        read(root, name)
    assert advice in str(e.value)


def test_a_folder_with_a_table_in_it_still_reads_its_text(root: Path):
    (root / "sub" / "cards.csv").write_text("front,back\n", encoding="utf-8")
    (root / "sub" / "notes.txt").write_text("Some notes.\n", encoding="utf-8")
    assert [t.text for t in read(root, "sub")] == ["Some notes.\n"]
