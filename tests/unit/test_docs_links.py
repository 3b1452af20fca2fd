"""Every relative link of README.md and docs/ points at a file that exists, and at a heading
of it when the link names one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (
            anchor and dest.suffix == ".md" and anchor not in _anchors(dest)
        ):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_no_page_names_an_issue_number() -> None:
    for page in PAGES:
        assert not re.search(r"\bissue\s*#?\d+", page.read_text(), flags=re.IGNORECASE), page.name
    assert not [p for p in (REPO / "docs").rglob("*") if re.search(r"issue", p.name, re.I)]
