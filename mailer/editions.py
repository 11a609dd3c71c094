"""Language editions: one issue written in several languages, each its own file in the same folder.

`2026-05-work-in-progress.md` (language: it) and `2026-05-work-in-progress.en.md` (language: en) are two
editions of issue 2026-05 when their front matter names the same newsletter and issue. A send of either
file sends the issue: each subscriber gets the edition in their language, or the newsletter's default
language when there is none in theirs.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailer.errors import IssueError, Problem
from mailer.issue import Issue, load_issue

_KEY = re.compile(r"^(newsletter|issue)\s*:\s*[\"']?([^\"'#\n]*?)[\"']?\s*(?:#.*)?$", re.M)


@dataclass(frozen=True)
class Editions:
    """Every edition of one issue, by language; `primary` is the file the editor named."""

    primary: Issue
    by_language: dict[str, Issue]

    @property
    def languages(self) -> list[str]:
        """The primary edition's language first, then the others in alphabetical order."""
        return [self.primary.language] + sorted(lang for lang in self.by_language if lang != self.primary.language)

    def fallback(self, default: str) -> str:
        """The edition of subscribers whose language has none: the newsletter's default, else the primary."""
        return default if default in self.by_language else self.primary.language

    @property
    def digest(self) -> str:
        """One digest over every edition: a campaign notices when any of them changed."""
        if len(self.by_language) == 1:
            return self.primary.digest  # as before editions existed: campaigns begun then stay comparable
        joined = "".join(f"{lang}:{self.by_language[lang].digest};" for lang in sorted(self.by_language))
        return hashlib.sha256(joined.encode("ascii")).hexdigest()


def load_editions(path: str | Path) -> Editions:
    """The issue at `path` and its other language editions found beside it (each validated in full)."""
    return editions_of(load_issue(path))


def editions_of(primary: Issue) -> Editions:
    """`primary` and the other language editions found beside its file."""
    path = Path(primary.path)
    found = {primary.language: primary}
    problems: list[Problem] = []
    for sibling in _siblings(path, primary) if path.parent.is_dir() else ():
        try:
            edition = load_issue(sibling)
        except IssueError as exc:
            problems += exc.problems
            continue
        if edition.language in found:
            other = found[edition.language].path
            problems.append(Problem(str(sibling), edition.key_lines.get("language"),
                                    f"a second '{edition.language}' edition of issue {primary.issue} (the first is {other})"))
            continue
        found[edition.language] = edition
    if problems:
        raise IssueError(problems)
    return Editions(primary, found)


def _siblings(path: Path, primary: Issue) -> Iterator[Path]:
    """Other .md files in the folder whose front matter names the same newsletter and issue id. Only the
    two keys are read first (a cheap match), so unrelated files are never parsed or reported."""
    for candidate in sorted(path.parent.glob("*.md")):
        if candidate.resolve() == path.resolve():
            continue
        try:
            head = candidate.read_text(encoding="utf-8-sig", errors="replace")[:4000]
        except OSError:
            continue
        front = head.split("\n---", 1)[0] if head.startswith("---") else ""
        keys = dict(_KEY.findall(front))
        if keys.get("newsletter", "").strip() == primary.newsletter and keys.get("issue", "").strip() == primary.issue:
            yield candidate
