"""Field HTML to plain text: tags dropped, entities decoded, line breaks kept, media counted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

SOUND = re.compile(r"\[sound:[^\]]*\]")
# Tags that end a line of text; everything else is inline and simply dropped.
BLOCK_TAGS = {"br", "div", "p", "li", "tr", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6"}
MEDIA_TAGS = {"img", "audio", "video", "object", "embed", "svg"}
HIDDEN_TAGS = {"script", "style"}
SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


@dataclass(frozen=True)
class FieldText:
    text: str
    media: int  # images, sounds and other media the field referred to

    @property
    def media_only(self) -> bool:
        return not self.text and self.media > 0


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.media = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in HIDDEN_TAGS:
            self.hidden += 1
        elif tag in MEDIA_TAGS:
            self.media += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag not in HIDDEN_TAGS:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)
        elif tag in BLOCK_TAGS and tag != "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def field_text(html: str) -> FieldText:
    """The text a person sees in a field, one line per visual line, and how much media it held."""
    sounds = len(SOUND.findall(html))
    parser = _TextParser()
    parser.feed(SOUND.sub(" ", html))
    parser.close()
    lines = (SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    return FieldText("\n".join(line for line in lines if line), sounds + parser.media)
