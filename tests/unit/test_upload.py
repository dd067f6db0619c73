"""Uploads: safe names, the size limit, the hash, and nothing half-written left behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from data_service.errors import DataError
from data_service.upload import MAX_NAME_BYTES, safe_name, store_upload
from simtrain.data.v1 import data_service_pb2 as pb


def chunks(name: str, *parts: bytes) -> list[pb.UploadChunk]:
    return [pb.UploadChunk(filename=name if i == 0 else "", data=p) for i, p in enumerate(parts)]


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("deck.apkg", "deck.apkg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\my deck (1).apkg", "my_deck_1_.apkg"),
        (".bashrc", "bashrc"),
        ("....", "upload"),
        ("a" * 300 + ".txt", "a" * 76 + ".txt"),
        ("Geschäftsprozess.apkg", "Geschäftsprozess.apkg"),
        ("Gescha\u0308ftsprozess.apkg", "Geschäftsprozess.apkg"),  # decomposed "ä" becomes the one letter
        ("日本語の単語.apkg", "日本語の単語.apkg"),
        ("Ελληνικά λεξιλόγιο.csv", "Ελληνικά_λεξιλόγιο.csv"),
        ("../Straße/../../Maß.txt", "Maß.txt"),
        ("..\\Übung\\..\\Übung.txt", "Übung.txt"),
        ("evil\u202etxt.exe", "evil_txt.exe"),  # a right-to-left override is not a letter
        ("a\uff0fb.txt", "a_b.txt"),  # nor a full-width slash
        ("tab\there\x00\x1b.txt", "tab_here_.txt"),
        ("..", "upload"),
        ("ä" * 300 + ".txt", "ä" * 76 + ".txt"),
        ("語" * 300 + ".txt", "語" * 65 + ".txt"),  # 3 bytes each: cut to fit MAX_NAME_BYTES
    ],
)
def test_safe_name(given: str, safe: str):
    assert safe_name(given) == safe
    assert len(safe.encode()) <= MAX_NAME_BYTES


def test_a_unicode_name_is_stored_as_it_is(tmp_path: Path):
    stored = store_upload(chunks("Geschäftsprozess.apkg", b"deck"), tmp_path, 1 << 20)
    assert stored.source == "Geschäftsprozess.apkg"
    assert (tmp_path / "Geschäftsprozess.apkg").read_bytes() == b"deck"


def test_store_streams_chunks_and_names_by_hash(tmp_path: Path):
    data = [b"hello ", b"world\n", b""]
    stored = store_upload(chunks("../notes.txt", *data), tmp_path, limit=1000)
    digest = hashlib.sha256(b"".join(data)).hexdigest()
    assert stored.source == "notes.txt"
    assert stored.size_bytes == 12 and stored.sha256 == digest
    assert (tmp_path / stored.source).read_bytes() == b"hello world\n"
    again = store_upload(chunks("notes.txt", b"hello world\n"), tmp_path, limit=1000)
    assert again == stored
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_taken_name_is_never_overwritten(tmp_path: Path):
    (tmp_path / "notes.txt").write_bytes(b"mine")
    other = store_upload(chunks("notes.txt", b"theirs"), tmp_path, limit=1000)
    assert other.source == f"notes-{hashlib.sha256(b'theirs').hexdigest()[:12]}.txt"
    assert (tmp_path / "notes.txt").read_bytes() == b"mine"
    assert (tmp_path / other.source).read_bytes() == b"theirs"
    assert store_upload(chunks("notes.txt", b"theirs"), tmp_path, limit=1000) == other


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ([], "the upload sent no chunks"),
        ([pb.UploadChunk(data=b"x")], "the first upload chunk must carry the file name"),
        (chunks("big.txt", b"x" * 60, b"x" * 60), "upload 'big.txt' is larger than the limit of 100 bytes"),
        (chunks("empty.txt", b""), "upload 'empty.txt' is empty"),
        (
            [pb.UploadChunk(filename="a", data=b"1"), pb.UploadChunk(filename="b", data=b"2")],
            "name two files",
        ),
    ],
)
def test_refusals_leave_nothing_behind(tmp_path: Path, parts: list, message: str):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        store_upload(parts, tmp_path, limit=100)
    assert not list(tmp_path.iterdir())
