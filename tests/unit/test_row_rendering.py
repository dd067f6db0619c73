"""How `simtrain datasets inspect` draws a row: roles told apart with and without colour, whitespace shown."""

from __future__ import annotations

from rich.console import Console

from simtrain.cli.rows import STYLES, legend, render_row, visible


def token(text: str, role: str, special: bool = False) -> dict:
    return {"id": 0, "text": text, "role": role, "special": special}


ROW = [
    token("Q", "masked"),
    token(":", "masked"),
    token("\n", "masked"),
    token("4", "trained"),
    token("2", "trained"),
    token("<|endoftext|>", "trained", special=True),
    token("<|endoftext|>", "padding", special=True),
    token("<|endoftext|>", "padding", special=True),
]


def test_marks_tell_masked_trained_and_padding_apart_without_colour():
    assert render_row(ROW, marks=True).plain == "[Q:⏎]42<|endoftext|>{pad ×2}"


def test_with_colour_the_roles_are_styles_and_no_brackets_are_added():
    text = render_row(ROW, marks=False)
    assert text.plain == "Q:⏎42<|endoftext|>{pad ×2}"
    styled = {text.plain[s.start : s.end]: str(s.style) for s in text.spans}
    assert styled["Q"] == styled["⏎"] == STYLES["masked"]
    assert styled["4"] == STYLES["trained"]
    assert styled["<|endoftext|>"].startswith(STYLES["trained"]) and "bold" in styled["<|endoftext|>"]
    assert styled["{pad ×2}"] == STYLES["padding"]


def test_a_stream_row_starts_masked_then_is_all_trained():
    row = [token("a", "masked"), token(" ", "trained"), token("b", "trained")]
    assert render_row(row, marks=True).plain == "[a] b"


def test_whitespace_and_control_characters_are_visible():
    assert visible("a\tb\r\n") == "a⇥b␍⏎"
    assert visible("\x00\x07 \u200b") == "␀\\x07 \\u200b"
    assert visible("né\ufffd") == "né\ufffd"


def test_the_legend_prints_plainly_when_piped():
    console = Console(color_system=None, width=200)
    with console.capture() as out:
        console.print(legend(marks=True))
    assert "trained (loss on it)  [masked] (input only)  {pad ×N}" in out.get()
