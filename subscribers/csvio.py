"""CSV import and export of subscribers, with row-level errors.

Columns: an e-mail address (required), a name (or first and last name), a language and a status (as
`export` writes them). Headers are matched case-, accent-, space- and punctuation-insensitively, in
Italian or English, as office spreadsheets export them ("Indirizzo e-mail", "Nome e cognome", "Lingua",
"E-Mail Address", "First name" + "Last name", ...); ',', ';' and tab separators are understood. The whole
file is checked before anything is written, so a bad row means nothing is imported.

Spreadsheet formula injection: every cell we write that starts with =, +, -, @, tab or CR gets a leading
single quote, so a spreadsheet shows it as text instead of running it (OWASP's advice), and the reader
removes exactly that quote, so importing our own export gives back what was exported. See
`neutralise_formula` for the one ambiguous case.
"""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from subscribers.errors import CsvImportError, InvalidAddress, StoreError
from subscribers.store import ListedSubscriber, NewSubscriber, clean_name, normalise_address

# Header spellings by role, as written in the error message listing the accepted ones.
# 'full' is a whole name; 'given' and 'family' are joined as "Nome Cognome" when there is no whole name.
HEADER_SPELLINGS: dict[str, tuple[str, ...]] = {
    "email": (
        "email", "e-mail", "mail", "indirizzo", "indirizzo e-mail", "indirizzo email", "indirizzo mail",
        "e-mail address", "email address", "posta elettronica", "indirizzo di posta elettronica",
    ),
    "full": ("nome e cognome", "cognome e nome", "nome cognome", "cognome nome", "nominativo", "full name", "nome completo"),
    "given": ("nome", "name", "first name", "given name"),
    "family": ("cognome", "last name", "surname", "family name"),
    "language": ("lingua", "language", "lang"),
    "status": ("stato", "status"),
}
ROLE_NAMES = {
    "email": "the e-mail address", "full": "the full name", "given": "the (first) name", "family": "the last name",
    "language": "the language", "status": "the status",
}
STATUSES = ("active", "unsubscribed", "bounced", "complained")
LANGUAGE = re.compile(r"^[a-z]{2}$")
OFFERED_LANGUAGES = ("it", "en")

# Characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISED = re.compile(r"'+[=+\-@\t\r]")  # one or more quotes, then a formula character


def header_key(cell: str) -> str:
    """'  "Indirizzo E-Mail" ' -> 'indirizzoemail': no case, accents, spaces, quotes or punctuation."""
    decomposed = unicodedata.normalize("NFKD", cell.casefold())
    return "".join(ch for ch in decomposed if ch.isalnum())  # combining accents are not alphanumeric


HEADER_ROLES = {header_key(spelling): role for role, spellings in HEADER_SPELLINGS.items() for spelling in spellings}


def neutralise_formula(cell: str) -> str:
    """The cell as a spreadsheet will show it as text: a leading ' when it starts like a formula.

    A cell that already is quotes followed by a formula character ("'=x") gets one more quote too, so
    `restore_formula` can tell it from one we neutralised: restore_formula(neutralise_formula(s)) == s
    for every string. Other cells, including names that start with a quote ("'Nduja"), are unchanged.
    """
    if cell.startswith(FORMULA_START) or _NEUTRALISED.match(cell):
        return "'" + cell
    return cell


def restore_formula(cell: str) -> str:
    """Undo `neutralise_formula`: one leading ' goes when quotes are followed by =, +, -, @, tab or CR.

    A cell starting with a quote followed by anything else ("'Nduja", "'s-Gravenhage") is left alone.
    The choice for files we did not write: a cell such as "'=A1" or "'+39 011" is read as "=A1" /
    "+39 011", which is what someone who typed the quote in a spreadsheet meant (there it only says
    "text, not a formula"); a name that really starts with a quote and then = + - @ can only come back
    intact from a file that `neutralise_formula` wrote (which doubles the quote).
    """
    return cell[1:] if _NEUTRALISED.match(cell) else cell


@dataclass(frozen=True)
class CsvSubscribers:
    people: list[NewSubscriber]
    rows: int  # data rows read
    merged: int  # rows whose address appeared earlier in the file


def offered_languages(languages: Sequence[str], default_language: str) -> tuple[tuple[str, ...], str]:
    """The languages offered, lower-cased, and the default language, which must be one of them."""
    if isinstance(languages, str):
        raise TypeError(f"languages must be a sequence of codes such as ('it', 'en'), not the string {languages!r}")
    offered = tuple(dict.fromkeys(code.strip().lower() for code in languages))
    if not offered:
        raise StoreError("no languages offered: give at least one, such as 'it'")
    for code in offered:
        if not LANGUAGE.match(code):
            raise StoreError(f"offered language {code!r} is not a two-letter code such as 'it' or 'en'")
    default = default_language.strip().lower()
    if default not in offered:
        raise StoreError(
            f"the default language {default_language!r} is not one of the languages offered ({', '.join(offered)})"
        )
    return offered, default


def read_subscribers_csv(
    path: str | Path, *, default_language: str = "it", languages: Sequence[str] = OFFERED_LANGUAGES
) -> CsvSubscribers:
    """Read a CSV file (UTF-8, with or without BOM). Raises CsvImportError listing every bad line, or
    StoreError when default_language is not one of the languages offered."""
    offered_languages(languages, default_language)  # before touching the file
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvImportError(str(path), [(text_line(path, exc.start), "not UTF-8 text (save the file as CSV UTF-8)")]) from None
    except OSError as exc:
        raise CsvImportError(str(path), [(0, f"cannot read: {exc.strerror}")]) from None
    return parse_subscribers_csv(text, str(path), default_language=default_language, languages=languages)


def text_line(path: Path, offset: int) -> int:
    return path.read_bytes()[:offset].count(b"\n") + 1


def _columns(cells: list[str], source: str) -> dict[str, int]:
    """Column index of each role found in the header line; CsvImportError (line 1) when it is unusable."""
    index: dict[str, int] = {}
    for position, cell in enumerate(cells):
        role = HEADER_ROLES.get(header_key(cell))
        if role is None:
            continue  # other columns (since, notes, phone...) are ignored
        if role in index:
            first = cells[index[role]].strip()
            raise CsvImportError(source, [(1, (
                f"columns {first!r} and {cell.strip()!r} both hold {ROLE_NAMES[role]}; keep one of them"
            ))])
        index[role] = position
    if "email" not in index:
        found = ", ".join(cell.strip() or "(empty)" for cell in cells) or "nothing"
        accepted = ", ".join(HEADER_SPELLINGS["email"])
        raise CsvImportError(source, [(1, f"no 'email' column in the header line (found: {found}); accepted: {accepted}")])
    return index


def parse_subscribers_csv(
    text: str, source: str = "<csv>", *, default_language: str = "it", languages: Sequence[str] = OFFERED_LANGUAGES
) -> CsvSubscribers:
    """Parse CSV text. Raises CsvImportError listing every bad line, or StoreError when default_language
    is not one of the languages offered."""
    offered, default = offered_languages(languages, default_language)
    problems: list[tuple[int, str]] = []
    by_email: dict[str, NewSubscriber] = {}
    rows = merged = 0
    for line, found in csv_rows(io.StringIO(text.removeprefix("\ufeff"), newline=""), source, offered):
        if isinstance(found, str):
            problems.append((line, found))
            continue
        rows += 1
        earlier = by_email.get(found.email)
        if earlier is not None:
            merged += 1
            by_email[found.email] = merge_rows(earlier, found)
        else:
            by_email[found.email] = found
    if problems:
        raise CsvImportError(source, problems)
    people = [NewSubscriber(p.email, p.name, p.language or default, p.status) for p in by_email.values()]
    return CsvSubscribers(people, rows, merged)


def merge_rows(earlier: NewSubscriber, later: NewSubscriber) -> NewSubscriber:
    """Two rows of one file for the same address: the first non-empty name and language, and a status
    saying they left wins over 'active'. (The import's staging table applies the same rule in SQL.)"""
    left = earlier.status if earlier.status != "active" else later.status
    return NewSubscriber(earlier.email, earlier.name or later.name, earlier.language or later.language, left)


def stream_subscribers_csv(
    path: str | Path, *, default_language: str = "it", languages: Sequence[str] = OFFERED_LANGUAGES
) -> Iterator[tuple[int, NewSubscriber | str]]:
    """Every row of a CSV file as (line, person) or (line, problem), read as it goes: memory stays flat
    whatever the file's size. The language is left '' where the row gives none. Raises StoreError at once
    when default_language is not offered, and CsvImportError when the file cannot be opened."""
    offered, _ = offered_languages(languages, default_language)
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CsvImportError(str(path), [(0, f"cannot read: {exc.strerror}")]) from None
    undecodable: set[int] = set()  # lines that are not UTF-8: reported at their own line, the rest still checked

    def decoded() -> Iterator[str]:
        for number, raw in enumerate(handle, 1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                undecodable.add(number)
                yield raw.decode("utf-8", "replace")

    def rows() -> Iterator[tuple[int, NewSubscriber | str]]:
        with handle:
            for line, found in csv_rows(decoded(), str(path), offered):
                yield line, ("not UTF-8 text (save the file as CSV UTF-8)" if line in undecodable else found)

    return rows()


def csv_rows(lines: Iterable[str], source: str, offered: Sequence[str]) -> Iterator[tuple[int, NewSubscriber | str]]:
    """The rows of CSV text (its lines, with their endings) after its header line: (line, person) or
    (line, problem). The language is '' where the row gives none. A header without an e-mail column
    raises CsvImportError."""
    lines = iter(lines)
    header_line = next(lines, "")
    if not header_line.strip():
        raise CsvImportError(source, [(1, "the file is empty; expected a header line with an 'email' column")])
    delimiter = max(",;\t", key=header_line.count)  # spreadsheets in Italian locales export with ';'
    reader = csv.reader(itertools.chain([header_line], lines), delimiter=delimiter, strict=True)
    line = 0
    try:
        header = next(reader)
        index = _columns(header, source)
        line = reader.line_num
        for record in reader:
            line, end = line + 1, reader.line_num  # a quoted field may span lines: report where the row starts
            if not any(cell.strip() for cell in record):
                line = end
                continue
            if end != line or any("\n" in cell or "\r" in cell for cell in record):
                yield line, f"row runs over {end - line + 1} lines: a quote (\") is not closed"
                line = end
                continue
            line = end
            if len(record) != len(header):
                yield line, f"expected {len(header)} columns, found {len(record)}"
                continue
            yield line, _person(record, index, offered)
    except csv.Error as exc:
        yield line + 1, f"unreadable CSV: {exc}"


def _person(record: list[str], index: dict[str, int], offered: Sequence[str]) -> NewSubscriber | str:
    """One row as a person, or what is wrong with it."""
    cells = {role: restore_formula(record[position]) for role, position in index.items()}
    try:
        email = normalise_address(cells["email"])
    except InvalidAddress as exc:
        return str(exc)
    given_family = (clean_name(cells.get("given", "")), clean_name(cells.get("family", "")))
    name = clean_name(cells.get("full", "")) or " ".join(part for part in given_family if part)
    language = cells.get("language", "").strip().lower()
    if language and language not in offered:
        return f"language {language!r} is not offered ({', '.join(offered)})"
    status = cells.get("status", "").strip().lower() or "active"
    if status not in STATUSES:
        return f"status {status!r} is not one of {', '.join(STATUSES)}"
    return NewSubscriber(email, name, language, status)


def write_subscribers_csv(members: Iterable[ListedSubscriber], out: TextIO) -> int:
    """Write subscribers as CSV that `read_subscribers_csv` reads back; cells that a spreadsheet would run
    as formulas are neutralised (see `neutralise_formula`). Returns how many were written."""
    writer = csv.writer(out)
    writer.writerow(["email", "name", "language", "status", "since"])
    count = 0
    for m in members:
        cells = [m.email, m.name, m.language, m.status, m.since.isoformat(timespec="seconds")]
        writer.writerow([neutralise_formula(c) for c in cells])
        count += 1
    return count
