"""The README and the docs/ pages link only to files that exist, and the README only inside the repository,
so a moved file or a renamed page cannot leave a dead link behind (MkDocs checks the links between pages;
this also covers the README, which is not part of the site, and links from pages to repository files)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and [text](target "title"), images too; <https://…> autolinks; [ref]: target definitions.
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def links(page: Path) -> list[str]:
    """Every link target in a Markdown page, outside code blocks and code spans."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    return INLINE.findall(text) + AUTOLINK.findall(text) + REFERENCE.findall(text)


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)) or target.startswith("//")


def test_the_pages_have_links():
    assert len(PAGES) > 5
    assert len(links(REPO / "README.md")) >= 10
    assert "docs/index.md" in links(REPO / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_to_a_file_in_the_repository(page: Path):
    broken = []
    for target in links(page):
        path = unquote(target.split("#", 1)[0])
        if is_external(target) or not path:
            continue
        resolved = (page.parent / path).resolve()
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(target)
    assert broken == [], f"{page.relative_to(REPO)} links to what is not in the repository"


def test_the_readme_links_only_inside_the_repository():
    readme = REPO / "README.md"
    outside = [t for t in links(readme) if is_external(t) or t.startswith("/")]
    assert outside == [], "the README links outside the repository"
    assert "../shared" not in readme.read_text(encoding="utf-8")


def test_the_link_finder_finds_what_it_must(tmp_path: Path):
    """The checker itself: each link form is seen, and code is left alone."""
    sample = tmp_path / "sample.md"
    sample.write_text(
        '[a](docs/a.md) ![b](img.png "t") <https://x.example>\n[c]: ref.md\n'
        "`[no](code.md)`\n```\n[no](fenced.md)\n```\n",
        encoding="utf-8",
    )
    assert sorted(links(sample)) == sorted(["docs/a.md", "img.png", "https://x.example", "ref.md"])
