"""Issue file (Markdown with YAML front matter) -> Issue, validated; every problem names file and line.

Format: front matter between two `---` lines; `#` starts a section, `##` an item; a line wholly in
emphasis right under an item heading is its date label; the rest is CommonMark (links, lists, bold,
bare URLs and e-mail addresses, which are autolinked).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from mailer.errors import IssueError, Problem

REQUIRED_KEYS = ("newsletter", "issue", "language", "subject")
OPTIONAL_KEYS = ("preheader", "edition", "contact", "date_line")
LANGUAGES = ("it", "en")
ISSUE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LINK_SCHEMES = ("http://", "https://", "mailto:")


def markdown_parser() -> MarkdownIt:
    """The one Markdown dialect of issue bodies: CommonMark, raw HTML off, bare URLs/addresses linked."""
    return MarkdownIt("commonmark", {"html": False, "linkify": True}).enable("linkify")


@dataclass(frozen=True)
class Item:
    title: str
    date_label: str | None
    body: str  # Markdown source
    line: int


@dataclass(frozen=True)
class Section:
    title: str
    intro: str  # Markdown source before the first item
    items: tuple[Item, ...]
    line: int


@dataclass(frozen=True)
class Issue:
    path: str
    newsletter: str
    issue: str
    language: str
    subject: str
    preheader: str
    edition: str
    date_line: str | None
    contact: tuple[str, ...] | None
    sections: tuple[Section, ...]
    digest: str  # sha256 of the file's bytes: tells whether a campaign's issue changed
    warnings: tuple[Problem, ...] = field(default=())
    key_lines: dict[str, int] = field(default_factory=dict)  # front matter key -> file line, for later errors

    def problem(self, key: str, message: str) -> Problem:
        """An error about a front matter value found after loading (e.g. an unconfigured newsletter)."""
        return Problem(self.path, self.key_lines.get(key), message)

    @property
    def items(self) -> list[Item]:
        return [item for section in self.sections for item in section.items]


def load_issue(path: str | Path) -> Issue:
    """Read and validate an issue file. Raises IssueError listing every error; warnings ride on the Issue."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IssueError([Problem(str(path), None, f"cannot read issue file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")  # editors on Windows save a byte-order mark
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IssueError([Problem(str(path), line, "file is not UTF-8 text")]) from None
    return parse_issue(text, str(path), digest=hashlib.sha256(raw).hexdigest())


def parse_issue(text: str, path: str = "<issue>", digest: str | None = None) -> Issue:
    problems: list[Problem] = []
    lines = text.replace("\r\n", "\n").split("\n")
    meta, body_start = _front_matter(lines, path, problems)
    sections = _sections(lines, body_start, path, problems) if meta is not None else []
    errors = [p for p in problems if p.severity == "error"]
    if errors or meta is None:
        raise IssueError(sorted(errors, key=lambda p: p.line or 0))
    contact = meta.get("contact")
    return Issue(
        path=path,
        newsletter=meta["newsletter"],
        issue=meta["issue"],
        language=meta["language"],
        subject=meta["subject"],
        preheader=meta.get("preheader") or "",
        edition=meta.get("edition") or "",
        date_line=meta.get("date_line"),
        contact=tuple(contact) if contact is not None else None,
        sections=tuple(sections),
        digest=digest or hashlib.sha256(text.encode("utf-8")).hexdigest(),
        warnings=tuple(sorted((p for p in problems if p.severity == "warning"), key=lambda p: p.line or 0)),
        key_lines=meta.get("__lines__", {}),
    )


def _front_matter(lines: list[str], path: str, problems: list[Problem]) -> tuple[dict[str, Any] | None, int]:
    """Parse the YAML between the leading `---` lines; returns (metadata, index of the first body line)."""
    if not lines or lines[0].strip() != "---":
        problems.append(Problem(path, 1, "an issue must start with front matter: a '---' line, YAML keys, '---'"))
        return None, 0
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        problems.append(Problem(path, 1, "front matter is not closed by a second '---' line"))
        return None, 0
    try:
        meta = yaml.load("\n".join(lines[1:end]), Loader=_StrictLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, DuplicateKey):
            reason = str(exc)
        problems.append(Problem(path, mark.line + 2 if mark else 2, f"front matter is not valid YAML: {reason}"))
        return None, end + 1
    if not isinstance(meta, dict):
        problems.append(Problem(path, 2, "front matter must be 'key: value' lines"))
        return None, end + 1

    def line_of(key: str) -> int:
        for i in range(1, end):
            if re.match(rf"\s*{re.escape(key)}\s*:", lines[i]):
                return i + 1
        return 1

    ok = True
    for key in REQUIRED_KEYS:
        value = meta.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(Problem(path, end + 1 if key not in meta else line_of(key), f"front matter lacks '{key}'"))
            ok = False
    for key, value in meta.items():
        if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
            problems.append(Problem(path, line_of(str(key)), f"unknown front matter key '{key}'", "warning"))
        elif key == "contact":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                problems.append(Problem(path, line_of(key), "'contact' must be a list of lines of text"))
                ok = False
        elif value is not None and not isinstance(value, str):
            problems.append(Problem(path, line_of(key), f"'{key}' must be text, got {value!r}; quote it"))
            ok = False
        if ok and key in REQUIRED_KEYS + OPTIONAL_KEYS and value is not None:
            meta[key] = value = _one_line_values(value)
            texts = value if isinstance(value, list) else [value]
            if any(unicodedata.category(ch) == "Cc" for text in texts for ch in text):
                problems.append(Problem(path, line_of(key), f"'{key}' holds control characters"))
                ok = False
    if ok and not ISSUE_ID.match(meta["issue"]):
        problems.append(Problem(path, line_of("issue"), f"issue id {meta['issue']!r}: use letters, digits, '-', '.', '_'"))
        ok = False
    if ok and meta["language"] not in LANGUAGES:
        problems.append(
            Problem(path, line_of("language"), f"language {meta['language']!r} is not one of {', '.join(LANGUAGES)}")
        )
        ok = False
    if ok:
        meta["__lines__"] = {str(key): line_of(str(key)) for key in meta}
    if ok and not meta.get("preheader"):
        problems.append(Problem(path, end + 1, "no 'preheader': mail clients will show the first words instead", "warning"))
    return (meta if ok else None), end + 1


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, mark: yaml.Mark | None) -> None:
        super().__init__(f"key '{key}' appears twice")
        self.problem_mark = mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise DuplicateKey(str(key), key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _one_line_values(value: str | list[str]) -> str | list[str]:
    """Header-bound text on one line: YAML's folded '>' and literal '|' styles end with a newline."""
    if isinstance(value, list):
        return [" ".join(v.split()) for v in value]
    return " ".join(value.split())


def _sections(lines: list[str], start: int, path: str, problems: list[Problem]) -> list[Section]:
    """Split the body at `#`/`##` headings (found by the Markdown parser, so code and lists are safe)."""
    body = "\n".join(lines[start:])
    tokens = markdown_parser().parse(body)
    headings: list[tuple[int, int, str]] = []  # (level, body-relative line, title)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.level == 0 and tok.tag in ("h1", "h2") and tok.map:
            headings.append((int(tok.tag[1]), tok.map[0], tokens[i + 1].content.strip()))
    _check_links(tokens, lines, start, path, problems)

    first = headings[0][1] if headings else len(lines) - start
    if "\n".join(lines[start : start + first]).strip():
        lead = next(i for i in range(start, start + first) if lines[i].strip())
        problems.append(Problem(path, lead + 1, "text before the first '#' section heading"))
    if not headings:
        problems.append(Problem(path, start + 1, "the issue has no sections ('# Section title')"))
        return []

    sections: list[Section] = []
    bounds = [h[1] for h in headings[1:]] + [len(lines) - start]
    pending: tuple[str, str, int] | None = None  # open section: title, intro, line
    items: list[Item] = []

    def close_section() -> None:
        if pending is None:
            return
        title, intro, line = pending
        if not intro.strip() and not items:
            problems.append(Problem(path, line, f"section '{title}' is empty", "warning"))
        sections.append(Section(title, intro, tuple(items), line))

    for (level, rel, title), stop in zip(headings, bounds):
        line = start + rel + 1  # 1-based file line of the heading
        block = lines[start + _heading_end(lines, start + rel) - start : start + stop]
        if not title:
            problems.append(Problem(path, line, "empty heading"))
        if level == 1:
            close_section()
            pending, items = (title, "\n".join(block).strip(), line), []
            continue
        if pending is None:
            problems.append(Problem(path, line, f"item '{title}' comes before any '#' section"))
            continue
        date_label, text = _split_date_label(block)
        if not text.strip():
            problems.append(Problem(path, line, f"item '{title}' has no text", "warning"))
        if date_label is None:
            problems.append(Problem(path, line, f"item '{title}' has no date label (an *emphasised* line under its heading)", "warning"))
        items.append(Item(title, date_label, text, line))
    close_section()
    return sections


def _heading_end(lines: list[str], index: int) -> int:
    """Index of the line after a heading; a setext heading spans its underline too."""
    if index + 1 < len(lines) and re.match(r"^\s{0,3}(=+|-+)\s*$", lines[index + 1]) and not lines[index].lstrip().startswith("#"):
        return index + 2
    return index + 1


DATE_LABEL = re.compile(r"^\s*(\*|_)(?!\1)(.+?)\1\s*$")


def _split_date_label(block: list[str]) -> tuple[str | None, str]:
    """The first non-blank line, if wholly *emphasised*, is the date label; the rest is the body."""
    for i, line in enumerate(block):
        if line.strip():
            match = DATE_LABEL.match(line)
            if match and match.group(2).strip():
                return match.group(2).strip(), "\n".join(block[i + 1 :]).strip()
            break
    return None, "\n".join(block).strip()


def _check_links(tokens: list[Token], lines: list[str], start: int, path: str, problems: list[Problem]) -> None:
    for tok in tokens:
        if tok.type != "inline" or not tok.map or not tok.children:
            continue
        for n, child in enumerate(tok.children):
            if child.type != "link_open":
                continue
            href = str(child.attrs.get("href", ""))
            label = tok.children[n + 1].content if n + 1 < len(tok.children) else ""
            line = _line_with(lines, start + tok.map[0], start + tok.map[1], f"{label}]({href})")
            if href in ("", "#"):
                problems.append(
                    Problem(path, line, f"placeholder link [{label}](#): put the real address before sending", "warning")
                )
            elif not href.startswith(LINK_SCHEMES):
                problems.append(Problem(path, line, f"link '{href}' is not a full http(s):// or mailto: address", "warning"))


def _line_with(lines: list[str], first: int, last: int, needle: str) -> int:
    for i in range(first, min(last, len(lines))):
        if needle in lines[i]:
            return i + 1
    return first + 1
