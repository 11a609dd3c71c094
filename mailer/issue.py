"""Issue file (Markdown with YAML front matter) -> Issue, validated; every problem names file and line.

Format: front matter between two `---` lines; `#` starts a section, `##` an item; a line wholly in
emphasis right under an item heading is its date label; the rest is CommonMark (links, lists, bold,
bare URLs and e-mail addresses, which are autolinked).
"""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from mailer.errors import IssueError, Problem
from mailer.settings import LANGUAGES

REQUIRED_KEYS = ("newsletter", "issue", "language", "subject")
OPTIONAL_KEYS = ("preheader", "edition", "contact", "date_line")
ISSUE_ID = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # YYYY-MM: the masthead's month and the campaign's key
ISSUE_ID_FORM = 'YYYY-MM, a year and a month 01-12 (e.g. "2026-05")'
# Values that end up in headers or beside them; 'issue' and 'language' have stricter forms of their own.
NO_ENCODED_WORD_KEYS = ("newsletter", "subject", "preheader", "edition", "contact", "date_line")
ENCODED_WORD = re.compile(r"=\?.*?\?=", re.S)  # RFC 2047 =?charset?q?...?=: would decode into header text
LINK_SCHEMES = ("http://", "https://", "mailto:")
MAX_ISSUE_BYTES = 2_000_000
RAW_HTML = "raw HTML is not allowed in an issue (write Markdown)"


def markdown_parser(*, typographic: bool = False) -> MarkdownIt:
    """The one Markdown dialect of issue bodies: CommonMark, raw HTML off, bare URLs/addresses linked.
    typographic=True (the HTML part) also curls quotes and apostrophes in text (d'Artista -> d’Artista);
    link targets and code keep theirs straight."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": typographic}).enable("linkify")
    return md.enable("smartquotes") if typographic else md


def _html_detector() -> MarkdownIt:
    """The same dialect with raw HTML on, only to find it: autolinks (<https://...>, <a@b.it>) and '<' stay text."""
    return MarkdownIt("commonmark", {"html": True})


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
    source: str = ""  # the text parsed: stored with a campaign, so the archive shows what was sent
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
        raw = _read_bounded(path)
    except OSError as exc:
        raise IssueError([Problem(str(path), None, f"cannot read issue file: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_ISSUE_BYTES:
        raise IssueError([_too_big(path, len(raw))])
    try:
        text = raw.decode("utf-8-sig")  # editors on Windows save a byte-order mark
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IssueError([Problem(str(path), line, "file is not UTF-8 text")]) from None
    return parse_issue(text, str(path), digest=hashlib.sha256(raw).hexdigest())


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing one over MAX_ISSUE_BYTES before reading it (stat), and never reading more
    than one byte past the limit (a file growing meanwhile, or a pipe, whose size stat does not tell)."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_ISSUE_BYTES:
            raise IssueError([_too_big(path, size)])
        return handle.read(MAX_ISSUE_BYTES + 1)


def _too_big(path: Path, size: int) -> Problem:
    return Problem(str(path), None, f"issue file is {_megabytes(size)} MB; the limit is {_megabytes(MAX_ISSUE_BYTES)} MB")


def _megabytes(size: int) -> str:
    """Size in MB with as few decimals as keep it truthful next to the limit: '3', '2.4', '2.000001'."""
    for decimals in range(6):
        shown = round(size / 1_000_000, decimals)
        if (size > MAX_ISSUE_BYTES) == (shown * 1_000_000 > MAX_ISSUE_BYTES):
            return f"{shown:.{decimals}f}"
    return f"{size / 1_000_000:.6f}"


def parse_issue(text: str, path: str = "<issue>", digest: str | None = None) -> Issue:
    problems: list[Problem] = []
    lines = text.replace("\r\n", "\n").split("\n")
    meta, body_start = _front_matter(lines, path, problems)
    sections = _sections(lines, body_start, path, problems) if body_start is not None else []
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
        source=text,
        warnings=tuple(sorted((p for p in problems if p.severity == "warning"), key=lambda p: p.line or 0)),
        key_lines=meta.get("__lines__", {}),
    )


def _front_matter(lines: list[str], path: str, problems: list[Problem]) -> tuple[dict[str, Any] | None, int | None]:
    """Parse and check the YAML between the leading `---` lines.

    Returns (metadata, index of the first body line): metadata is None when any front matter error was found;
    the body index is None only when the front matter has no end, so the body cannot be told apart.
    """
    if not lines or lines[0].strip() != "---":
        problems.append(Problem(path, 1, "an issue must start with front matter: a '---' line, YAML keys, '---'"))
        return None, None
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        problems.append(Problem(path, 1, "front matter is not closed by a second '---' line"))
        return None, None
    meta = _load_yaml(lines[1:end], path, problems)
    if meta is None:
        return None, end + 1

    def line_of(key: str) -> int:
        for i in range(1, end):
            if re.match(rf"\s*{re.escape(key)}\s*:", lines[i]):
                return i + 1
        return 1

    return _check_front_matter(meta, line_of, end + 1, path, problems), end + 1


def _load_yaml(lines: list[str], path: str, problems: list[Problem]) -> dict[Any, Any] | None:
    """The front matter's mapping; None (with the error) when it is not YAML 'key: value' lines."""
    try:
        meta = yaml.load("\n".join(lines), Loader=_StrictLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = str(exc) if isinstance(exc, DuplicateKey) else getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(path, mark.line + 2 if mark else 2, f"front matter is not valid YAML: {reason}"))
        return None
    if not isinstance(meta, dict):
        problems.append(Problem(path, 2, "front matter must be 'key: value' lines"))
        return None
    return meta


def _check_front_matter(
    meta: dict[Any, Any], line_of: Callable[[str], int], closing_line: int, path: str, problems: list[Problem]
) -> dict[str, Any] | None:
    """Check every key on its own, so that one run lists every problem; the clean values, or None on any error."""
    clean: dict[str, Any] = {}
    failed = False
    for key in REQUIRED_KEYS:
        if key not in meta:
            problems.append(Problem(path, closing_line, f"front matter is missing '{key}'"))
            failed = True
    for key, value in meta.items():
        key = str(key)
        if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
            problems.append(Problem(path, line_of(key), f"unknown front matter key '{key}'", "warning"))
            continue
        value, error = _check_value(key, value)
        if error:
            problems.append(Problem(path, line_of(key), error))
            failed = True
        clean[key] = value
    if not clean.get("preheader"):
        problems.append(Problem(path, closing_line, "no 'preheader': mail clients will show the first words instead", "warning"))
    if failed:
        return None
    clean["__lines__"] = {str(key): line_of(str(key)) for key in meta}
    return clean


def _check_value(key: str, value: Any) -> tuple[Any, str | None]:
    """One known front matter value, on one line, and the error that refuses it (None when it is fine).

    A blank optional value counts as absent (None); a blank required one is an error.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, f"front matter '{key}' is empty" if key in REQUIRED_KEYS else None
    if key == "issue" and not isinstance(value, str):  # e.g. 2026-05-01 unquoted: YAML makes it a date
        return None, _issue_id_error(str(value))
    if key == "contact":
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return None, "'contact' must be a list of lines of text"
    elif not isinstance(value, str):
        return None, f"'{key}' must be text, got {value!r}; quote it"
    value = _one_line_values(value)
    texts = value if isinstance(value, list) else [value]
    if any(unicodedata.category(ch) == "Cc" for text in texts for ch in text):
        return value, f"'{key}' holds control characters"
    if key in NO_ENCODED_WORD_KEYS and any(ENCODED_WORD.search(text) for text in texts):
        return value, f"'{key}' holds an RFC 2047 encoded word (=?...?=); write the text itself"
    if key == "issue" and not ISSUE_ID.fullmatch(value):
        return value, _issue_id_error(value)
    if key == "language" and value not in LANGUAGES:
        return value, f"language {value!r} is not one of {', '.join(LANGUAGES)}"
    return value, None


def _issue_id_error(shown: str) -> str:
    return f"issue id {shown!r} is not of the form {ISSUE_ID_FORM}"


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
    _check_raw_html(_html_detector().parse(body), lines, start, path, problems)

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


def _check_raw_html(tokens: list[Token], lines: list[str], start: int, path: str, problems: list[Problem]) -> None:
    """An error on each line holding raw HTML (a block, a tag, a comment): it would be shown escaped, as text."""
    found: set[int] = set()
    for tok in tokens:
        if tok.type == "html_block" and tok.map:
            found.add(start + tok.map[0] + 1)
        elif tok.type == "inline" and tok.map and tok.children:
            for child in tok.children:
                if child.type == "html_inline":
                    found.add(_line_with(lines, start + tok.map[0], start + tok.map[1], child.content))
    problems.extend(Problem(path, line, RAW_HTML) for line in sorted(found))
