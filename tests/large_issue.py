"""A 30-item issue made of the real items of both Italian examples, for the size and rendering checks.

The City's issues run to 15-20 items; a 30-item one is what a busy month looks like, and where Gmail's
~102 KB clip starts to matter.
"""
from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ISSUE_2021, ISSUE_2026


def _front_matter_and_body(path: Path) -> tuple[str, str]:
    text = path.read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    return front, body


def _items(body: str) -> list[str]:
    """Every '## item' block of an issue body (section headings and their intros left out)."""
    blocks = re.split(r"(?m)^(?=#{1,2} )", body)
    return [block.rstrip() + "\n" for block in blocks if block.startswith("## ")]


def write_large_issue(folder: Path, items: int = 32) -> Path:
    """An issue of `items` items (2026's and 2021's, repeated if need be) in three sections."""
    front, body_2026 = _front_matter_and_body(ISSUE_2026)
    pool = _items(body_2026) + _items(_front_matter_and_body(ISSUE_2021)[1])
    chosen = [pool[n % len(pool)] for n in range(items)]
    third = len(chosen) // 3
    sections = [("Top News", chosen[:third]), ("Approfondimenti", chosen[third:2 * third]), ("In breve", chosen[2 * third:])]
    body = "".join(f"# {title}\n\n" + "\n".join(blocks) + "\n" for title, blocks in sections)
    front = re.sub(r'(?m)^issue: .*$', 'issue: "2026-06"', front)
    path = folder / "2026-06-large.md"
    path.write_text(f"---\n{front}---\n{body}", encoding="utf-8")
    return path
