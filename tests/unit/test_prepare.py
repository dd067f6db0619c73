"""Preparing datasets: packing, the leak-free split, statistics, ids, and refusals with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_service import store as store_module
from data_service.errors import DataError
from data_service.modules import discover
from data_service.modules.text import READ_BYTES
from data_service.stats import MIN_TOKENS_PER_VOCAB_ENTRY
from data_service.store import Store


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path.name


def test_pairs_are_stored_as_prompt_completion_end(root: Path, store: Store):
    rows = [{"prompt": f"Q{i}:", "completion": f" A{i}"} for i in range(40)]
    ds = store.prepare(discover()["jsonl"], root, write_jsonl(root / "qa.jsonl", rows), packing="pairs")
    tok = ds.tokenizer()
    end = ds.meta["end_token"]
    assert end == tok.vocab_size - 1 == ds.meta["vocab_size"] - 1
    seen = set()
    for split in ("train", "val"):
        tokens, index = ds.tokens(split), ds.rows(split)
        assert len(index) == ds.meta["splits"][split]["num_examples"]
        for start, prompt_len, total in index:
            ids = tokens[start : start + total]
            assert ids[-1] == end
            prompt, completion = tok.decode(ids[:prompt_len]), tok.decode(ids[prompt_len:-1])
            assert completion == " A" + prompt.removeprefix("Q").removesuffix(":")
            seen.add(prompt)
    assert len(seen) == 40
    assert ds.meta["splits"]["val"]["num_examples"] == 4


def test_stream_packing_joins_documents_with_the_separator(root: Path, store: Store):
    name = write_jsonl(root / "docs.jsonl", [{"text": "one"}, {"text": "two"}, {"text": "three"}])
    ds = store.prepare(discover()["jsonl"], root, name, options={"val_fraction": "0", "separator": "|"})
    assert ds.tokenizer().decode(ds.tokens("train")) == "one|two|three"
    assert ds.meta["splits"]["val"] == {"num_tokens": 0, "num_examples": 0}
    assert any("val split is empty" in w for w in ds.meta["warnings"])


def test_pairs_in_stream_packing(root: Path, store: Store):
    name = write_jsonl(root / "qa.jsonl", [{"prompt": "2+2=", "completion": "4"}] * 3)
    ds = store.prepare(discover()["jsonl"], root, name, options={"val_fraction": "0"})
    assert ds.tokenizer().decode(ds.tokens("train")) == "2+2=4\n2+2=4\n2+2=4"


def test_duplicates_land_on_one_side(root: Path, store: Store):
    rng = np.random.default_rng(0)
    rows = [{"prompt": f"q{int(rng.integers(30))}", "completion": f"a{i}"} for i in range(300)]
    ds = store.prepare(discover()["jsonl"], root, write_jsonl(root / "dups.jsonl", rows), packing="pairs")
    tok = ds.tokenizer()

    def prompts(split: str) -> set[str]:
        tokens = ds.tokens(split)
        return {tok.decode(tokens[s : s + p]) for s, p, _ in ds.rows(split)}

    assert prompts("val") and not prompts("train") & prompts("val")
    stats = ds.meta["stats"]
    assert stats["train_val_overlap"] == 0
    assert 0.03 < stats["val_fraction_of_tokens"] < 0.2


def test_the_split_is_deterministic_and_counts_exact_duplicates(root: Path, tmp_path: Path):
    text = "".join(f"Paragraph {i % 50} says hello.\n\n" for i in range(200))
    (root / "p.txt").write_text(text, encoding="utf-8")
    a = Store(tmp_path / "a").prepare(discover()["text"], root, "p.txt")
    b = Store(tmp_path / "b").prepare(discover()["text"], root, "p.txt")
    assert np.array_equal(a.tokens("val"), b.tokens("val"))
    assert a.meta["stats"]["duplicate_examples"] == 150
    assert a.meta["stats"]["train_val_overlap"] == 0
    assert any("150 of 200 examples are exact duplicates" in w for w in a.meta["warnings"])


def test_clean_text_has_no_empty_examples(root: Path, store: Store):
    paragraph = ("word " * 12 + "\n") * 9  # 549 characters: each paragraph is cut at PIECE_CHARS
    text = "\n" + "".join(f"{i}. {paragraph}\n" for i in range(30))
    (root / "clean.txt").write_text(text, encoding="utf-8")
    ds = store.prepare(discover()["text"], root, "clean.txt")
    assert ds.meta["stats"]["empty_examples"] == 0
    assert not any("empty" in w for w in ds.meta["warnings"])


def test_stats_for_pairs_at_block_sizes(root: Path, store: Store):
    rows = [{"prompt": "p" * 10, "completion": "c" * 100}] + [{"prompt": "q", "completion": "d"}] * 9
    ds = store.prepare(
        discover()["jsonl"],
        root,
        write_jsonl(root / "long.jsonl", rows),
        packing="pairs",
        options={"val_fraction": "0"},
    )
    stats = ds.meta["stats"]
    at64 = stats["at_block_size"]["64"]
    assert at64["truncated"] == pytest.approx(0.1)
    # 9 rows of 2 real positions (1 learned) + 1 row of 64 (55 learned), out of 10 x 64.
    assert at64["padded"] == pytest.approx(1 - (9 * 2 + 64) / 640)
    assert at64["masked"] == pytest.approx(1 - (9 * 2 + 55) / 640)
    assert stats["at_block_size"]["256"]["truncated"] == 0
    assert stats["example_tokens"]["max"] == 111
    assert stats["duplicate_examples"] == 8


def test_dataset_id_hashes_source_and_options(root: Path, store: Store):
    (root / "a.txt").write_text("Some text.\n\nMore text here.\n", encoding="utf-8")
    text = discover()["text"]
    first = store.prepare(text, root, "a.txt")
    assert store.prepare(text, root, "a.txt", options={"val_fraction": "0.10"}).id == first.id
    assert store.prepare(text, root, "a.txt", tokenizer="byte").id != first.id
    assert store.prepare(text, root, "a.txt", options={"separator": "\n\n"}).id != first.id
    (root / "a.txt").write_text("Other text.\n", encoding="utf-8")
    assert store.prepare(text, root, "a.txt").id != first.id
    assert [d.id for d in store.list()][0] == first.id and len(store.list()) == 4


def test_dataset_id_changes_with_the_prepared_format(root: Path, store: Store, monkeypatch):
    """A layout change (such as the loss masks of format 4) must not reuse datasets prepared before it."""
    (root / "a.txt").write_text("Some text.\n", encoding="utf-8")
    text = discover()["text"]
    current = store.prepare(text, root, "a.txt").id
    monkeypatch.setattr(store_module, "FORMAT", store_module.FORMAT - 1)
    older = store.prepare(text, root, "a.txt")
    assert older.id != current and older.meta["format"] == store_module.FORMAT


def test_bpe_dataset_round_trips(root: Path, store: Store):
    (root / "t.txt").write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    ds = store.prepare(discover()["text"], root, "t.txt", tokenizer="bpe", options={"vocab_size": "300"})
    tok = ds.tokenizer()
    assert tok.kind == "bpe" and 256 < ds.meta["vocab_size"] <= 300
    assert "the cat sat on the mat. the cat" in tok.decode(ds.tokens("train"))
    saved = json.loads((ds.path / "tokenizer.json").read_text())
    assert saved["kind"] == "bpe"


def made_up_words(n: int, seed: int = 3) -> str:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(2000)]
    return " ".join(rng.choice(vocab, size=n))


def test_a_bpe_vocabulary_too_large_for_the_data_is_warned(root: Path, store: Store):
    (root / "w.txt").write_text(made_up_words(8000), encoding="utf-8")
    text = discover()["text"]
    big = store.prepare(text, root, "w.txt", tokenizer="bpe", options={"vocab_size": "4096"})
    train, vocab = big.meta["stats"]["num_tokens"]["train"], big.meta["vocab_size"]
    assert train < MIN_TOKENS_PER_VOCAB_ENTRY * vocab
    said = [w for w in big.meta["warnings"] if w.startswith("The BPE vocabulary has")]
    assert said == [
        f"The BPE vocabulary has {vocab} entries for {train} train tokens ({train / vocab:.1f} per entry, "
        f"under {MIN_TOKENS_PER_VOCAB_ENTRY}): most learned tokens are seen too rarely to train; use a "
        f"smaller vocab_size, about {2 ** ((train // MIN_TOKENS_PER_VOCAB_ENTRY).bit_length() - 1)}."
    ]
    small = store.prepare(text, root, "w.txt", tokenizer="bpe", options={"vocab_size": "300"})
    assert not any("BPE vocabulary" in w for w in small.meta["warnings"])
    for kind in ("byte", "char"):  # the data sets their vocabulary; nothing to choose
        ds = store.prepare(text, root, "w.txt", tokenizer=kind)
        assert not any("vocab" in w for w in ds.meta["warnings"])


def test_warnings_judge_no_block_size(root: Path, store: Store):
    """The job's block size is chosen later; the stats say what each split can serve instead."""
    (root / "short.txt").write_text("".join(f"Line {i} of a short note.\n\n" for i in range(8)))
    ds = store.prepare(discover()["text"], root, "short.txt")
    rows = [{"prompt": "p" * 10, "completion": "c" * 600}] * 3 + [{"prompt": "q", "completion": "d"}] * 30
    long = store.prepare(discover()["jsonl"], root, write_jsonl(root / "long.jsonl", rows), packing="pairs")
    for warning in ds.meta["warnings"] + long.meta["warnings"]:
        assert "block_size" not in warning and "256" not in warning
    tokens = ds.meta["stats"]["num_tokens"]
    assert ds.meta["stats"]["max_block_size"] == {s: n - 1 for s, n in tokens.items()}
    assert "max_block_size" not in long.meta["stats"]  # pairs serve any block size, truncated or not


def test_a_val_split_emptied_by_duplicates_says_why(root: Path, store: Store):
    (root / "same.txt").write_text("The same paragraph again.\n\n" * 40, encoding="utf-8")
    ds = store.prepare(discover()["text"], root, "same.txt")
    stats = ds.meta["stats"]
    assert stats["split_groups"] == 1 and stats["num_examples"]["val"] == 0
    why = stats["why_empty"]["val"]
    assert why.startswith("the examples (40) all fall in one split group") and "add distinct examples" in why
    assert "train" not in stats["why_empty"]
    assert f"The val split is empty: {why}." in ds.meta["warnings"]
    rows = [{"prompt": "Same question?", "completion": f"answer {i}"} for i in range(20)]
    pairs = store.prepare(discover()["jsonl"], root, write_jsonl(root / "q.jsonl", rows), packing="pairs")
    assert pairs.meta["stats"]["split_groups"] == 1
    assert "pairs by their prompt" in pairs.meta["stats"]["why_empty"]["val"]
    none = store.prepare(discover()["text"], root, "same.txt", options={"val_fraction": "0"})
    assert none.meta["stats"]["why_empty"]["val"].startswith("val_fraction is 0")


def test_synthetic_module_needs_no_file(root: Path, store: Store):
    ds = store.prepare(discover()["sort"], root, "sort", packing="pairs", options={"num_examples": "500"})
    assert ds.meta["source"] == "sort" and sum(s["num_examples"] for s in ds.meta["splits"].values()) == 500


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"tokenizer": "char", "options": {"vocab_size": "500"}},
            "option vocab_size applies to the bpe tokenizer only",
        ),
        ({"options": {"overlong": "drop"}}, "option overlong must be one of truncate, reject, got 'drop'"),
        ({"options": {"token_dtype": "int8"}}, "option token_dtype must be one of auto, uint16, uint32"),
        ({"packing": "pairs"}, "packing 'pairs' needs prompt/completion examples, but 1 of the 1 examples"),
        ({"packing": "rows"}, "unknown packing 'rows'; supported: stream, pairs"),
        ({"tokenizer": "sentencepiece"}, "unknown tokenizer 'sentencepiece'; supported: char, byte, bpe"),
    ],
)
def test_refusals(root: Path, store: Store, kwargs: dict, message: str):
    (root / "x.txt").write_text("text", encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.prepare(discover()["text"], root, "x.txt", **kwargs)
    assert not list(store.root.glob(".*")), "a failed preparation leaves no temporary directory"


def test_vocab_too_large_for_the_token_dtype(root: Path, store: Store):
    (root / "many.txt").write_text("".join(chr(0x10000 + i) for i in range(70_000)), encoding="utf-8")
    with pytest.raises(DataError, match="70001 tokens, too many for token_dtype uint16"):
        store.prepare(discover()["text"], root, "many.txt", options={"token_dtype": "uint16"})
    ds = store.prepare(discover()["text"], root, "many.txt")
    assert ds.meta["dtype"] == "uint32" and ds.tokens("train").max() >= 2**16


def test_utf8_error_offset_past_the_first_read(root: Path, store: Store):
    data = b"a" * (READ_BYTES + 10) + b"\n" + b"ok \xff"
    (root / "big.txt").write_bytes(data)
    with pytest.raises(DataError, match=f"big.txt is not valid UTF-8: byte 0xff at offset {len(data) - 1}"):
        store.prepare(discover()["text"], root, "big.txt")


@pytest.mark.parametrize("tokenizer", ["char", "byte"])
def test_val_bytes_per_token_is_the_decoded_text_per_token(root: Path, store: Store, tokenizer: str):
    # Each line holds 2-byte and 3-byte characters, so a char token is more than a byte of text.
    lines = [f"line {i}: café naïve — {i * 7}" for i in range(200)]
    (root / "accents.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    ds = store.prepare(discover()["text"], root, "accents.txt", tokenizer=tokenizer)
    val = ds.tokens("val")
    text = ds.tokenizer().decode(val)
    assert ds.meta["stats"]["val_bytes_per_token"] == pytest.approx(len(text.encode("utf-8")) / len(val))
    if tokenizer == "char":
        assert ds.meta["stats"]["val_bytes_per_token"] > 1.05
    else:
        assert ds.meta["stats"]["val_bytes_per_token"] == pytest.approx(1.0)


def test_an_empty_val_split_has_no_bytes_per_token(root: Path, store: Store):
    (root / "t.txt").write_text("some text\n" * 50)
    ds = store.prepare(discover()["text"], root, "t.txt", options={"val_fraction": "0"})
    assert ds.meta["stats"]["val_bytes_per_token"] is None
