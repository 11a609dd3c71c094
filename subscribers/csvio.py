"""CSV import and export of subscribers, with row-level errors.

Columns: email (required), name, language, status (as `export` writes it); Italian headers (nome, lingua) and ';' or tab separators,
as spreadsheet exports produce them, are understood. The whole file is checked before anything is
written, so a bad row means nothing is imported.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from subscribers.errors import CsvImportError, InvalidAddress
from subscribers.store import ListedSubscriber, NewSubscriber, clean_name, normalise_address

HEADER_ALIASES = {
    "email": "email", "e-mail": "email", "mail": "email", "indirizzo": "email",
    "name": "name", "nome": "name", "full name": "name",
    "language": "language", "lingua": "language", "lang": "language",
    "status": "status", "stato": "status",
}
STATUSES = ("active", "unsubscribed", "bounced", "complained")
LANGUAGE = re.compile(r"^[a-z]{2}$")


@dataclass(frozen=True)
class CsvSubscribers:
    people: list[NewSubscriber]
    rows: int  # data rows read
    merged: int  # rows whose address appeared earlier in the file


def read_subscribers_csv(path: str | Path, *, default_language: str = "it") -> CsvSubscribers:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvImportError(str(path), [(text_line(path, exc.start), "not UTF-8 text (save the file as CSV UTF-8)")]) from None
    except OSError as exc:
        raise CsvImportError(str(path), [(0, f"cannot read: {exc.strerror}")]) from None
    return parse_subscribers_csv(text, str(path), default_language=default_language)


def text_line(path: Path, offset: int) -> int:
    return path.read_bytes()[:offset].count(b"\n") + 1


def parse_subscribers_csv(text: str, source: str = "<csv>", *, default_language: str = "it") -> CsvSubscribers:
    if not text.strip():
        raise CsvImportError(source, [(1, "the file is empty; expected a header line with an 'email' column")])
    header_line = text.splitlines()[0]
    delimiter = max(",;\t", key=header_line.count)  # spreadsheets in Italian locales export with ';'
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    problems: list[tuple[int, str]] = []
    by_email: dict[str, NewSubscriber] = {}
    rows = merged = 0
    try:
        header = [HEADER_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in next(reader)]
        if "email" not in header:
            raise CsvImportError(source, [(1, f"no 'email' column in the header line (found: {', '.join(header)})")])
        index = {name: header.index(name) for name in ("email", "name", "language", "status") if name in header}
        line = reader.line_num
        for record in reader:
            line, end = line + 1, reader.line_num  # a quoted field may span lines: report where the row starts
            if not any(cell.strip() for cell in record):
                line = end
                continue
            rows += 1
            if end != line or any("\n" in cell or "\r" in cell for cell in record):
                problems.append((line, f"row runs over {end - line + 1} lines: a quote (\") is not closed"))
                line = end
                continue
            line = end
            if len(record) != len(header):
                problems.append((line, f"expected {len(header)} columns, found {len(record)}"))
                continue
            try:
                email = normalise_address(record[index["email"]])
            except InvalidAddress as exc:
                problems.append((line, str(exc)))
                continue
            name = clean_name(record[index["name"]]) if "name" in index else ""
            language = record[index["language"]].strip().lower() if "language" in index else ""
            if language and not LANGUAGE.match(language):
                problems.append((line, f"language {language!r} is not a two-letter code such as 'it' or 'en'"))
                continue
            status = (record[index["status"]].strip().lower() if "status" in index else "") or "active"
            if status not in STATUSES:
                problems.append((line, f"status {status!r} is not one of {', '.join(STATUSES)}"))
                continue
            earlier = by_email.get(email)
            if earlier is not None:
                merged += 1
                left = earlier.status if earlier.status != "active" else status  # a row saying they left wins
                by_email[email] = NewSubscriber(email, earlier.name or name, earlier.language or language, left)
            else:
                by_email[email] = NewSubscriber(email, name, language, status)
    except csv.Error as exc:
        problems.append((line + 1, f"unreadable CSV: {exc}"))
    if problems:
        raise CsvImportError(source, problems)
    people = [NewSubscriber(p.email, p.name, p.language or default_language, p.status) for p in by_email.values()]
    return CsvSubscribers(people, rows, merged)


def write_subscribers_csv(members: Iterable[ListedSubscriber], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(["email", "name", "language", "status", "since"])
    count = 0
    for m in members:
        writer.writerow([m.email, m.name, m.language, m.status, m.since.isoformat(timespec="seconds")])
        count += 1
    return count
