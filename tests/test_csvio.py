"""CSV import/export: the headers offices really use, the languages offered, formula injection, round trips."""
from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from mailer.settings import Settings
from subscribers import store
from subscribers.csvio import (
    CsvSubscribers,
    neutralise_formula,
    parse_subscribers_csv,
    read_subscribers_csv,
    restore_formula,
    write_subscribers_csv,
)
from subscribers.errors import CsvImportError, StoreError
from subscribers.store import ListedSubscriber

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")



@pytest.fixture
def settings(any_settings: Settings) -> Settings:
    """These tests run on SQLite and on PostgreSQL."""
    return any_settings

def read(tmp_path: Path, text: str, *, encoding: str = "utf-8", **options: object) -> CsvSubscribers:
    path = tmp_path / "people.csv"
    path.write_text(text, encoding=encoding, newline="")
    return read_subscribers_csv(path, **options)  # type: ignore[arg-type]


def problems(tmp_path: Path, text: str, **options: object) -> list[tuple[int, str]]:
    with pytest.raises(CsvImportError) as caught:
        read(tmp_path, text, **options)
    assert "nothing was imported" in str(caught.value)
    return caught.value.problems


# ---- headers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "email_header",
    [
        "Indirizzo e-mail", "Indirizzo email", "E-mail", "Email", "E-Mail Address", "Email address",
        "Posta elettronica", "  INDIRIZZO E-MAIL  ", "'Email'", ' "E-mail" ', "“Posta elettronica”",
        "Pòsta Elettrònica", "e‑mail",  # accents; a non-breaking hyphen as word processors put it
        "indirizzo_email", "EMAIL_ADDRESS", "mail", "indirizzo",  # the last two were accepted before
    ],
)
def test_address_column_headers(tmp_path: Path, email_header: str) -> None:
    parsed = read(tmp_path, f"Codice;{email_header};Note\n17;Anna.Rossi@Comune.Torino.it;x\n")
    assert [(p.email, p.name, p.language, p.status) for p in parsed.people] == [
        ("anna.rossi@comune.torino.it", "", "it", "active"),
    ]


@pytest.mark.parametrize(
    "name_header", ["Nome e cognome", "Cognome e nome", "Nominativo", "Nome", "Name", "Full name", " NOMINATIVO ", "'Full Name'"]
)
def test_whole_name_column_headers(tmp_path: Path, name_header: str) -> None:
    parsed = read(tmp_path, f"Email,{name_header}\na@example.org,  Carla   D'Angelo \n")
    assert [p.name for p in parsed.people] == ["Carla D'Angelo"]


@pytest.mark.parametrize(
    "header,row,expected",
    [
        ("Email;Nome;Cognome", "a@example.org;Anna;Rossi", "Anna Rossi"),
        ("Cognome;Nome;Indirizzo e-mail", "Lo Russo;Stefano;a@example.org", "Stefano Lo Russo"),
        ("E-Mail Address,First name,Last name", "a@example.org,Ben,Miller", "Ben Miller"),
        ("Email,Name,Surname", "a@example.org,Zoé,Müller", "Zoé Müller"),
        ("Email;Nome;Cognome", "a@example.org;;Rossi", "Rossi"),
        ("Email;Nome;Cognome", "a@example.org;Anna;", "Anna"),
        ("Email;Nome;Cognome", "a@example.org;;", ""),
        ("Email;Nominativo;Nome;Cognome", "a@example.org;Rossi Anna;Anna;Rossi", "Rossi Anna"),  # a whole name wins
        ("Email;Nominativo;Nome;Cognome", "a@example.org;;Anna;Rossi", "Anna Rossi"),  # ...when there is one
    ],
)
def test_first_and_last_name_columns_are_joined(tmp_path: Path, header: str, row: str, expected: str) -> None:
    assert [p.name for p in read(tmp_path, f"{header}\n{row}\n").people] == [expected]


@pytest.mark.parametrize("language_header,status_header", [("Lingua", "Stato"), ("Language", "Status"), (" LÌNGUA ", '"STATO"')])
def test_language_and_status_headers(tmp_path: Path, language_header: str, status_header: str) -> None:
    text = f"Email\t{language_header}\t{status_header}\na@example.org\tEN\tunsubscribed\nb@example.org\t\t\n"
    parsed = read(tmp_path, text)
    assert [(p.email, p.language, p.status) for p in parsed.people] == [
        ("a@example.org", "en", "unsubscribed"), ("b@example.org", "it", "active"),
    ]


def test_without_an_address_column_the_error_names_found_and_accepted_headers(tmp_path: Path) -> None:
    found = problems(tmp_path, "Nome;Cognome;Telefono\nAnna;Rossi;011 123\n")
    assert len(found) == 1 and found[0][0] == 1
    message = found[0][1]
    assert "no 'email' column in the header line (found: Nome, Cognome, Telefono); accepted: " in message
    accepted = message.split("accepted: ")[1].split(", ")
    for spelling in ("email", "e-mail", "indirizzo e-mail", "indirizzo email", "e-mail address", "email address", "posta elettronica"):
        assert spelling in accepted


def test_two_columns_for_the_same_thing_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "Email;Nome;Indirizzo e-mail\na@example.org;Anna;b@example.org\n")
    assert found == [(1, "columns 'Email' and 'Indirizzo e-mail' both hold the e-mail address; keep one of them")]


# ---- languages ----------------------------------------------------------------------------------------

def test_a_language_not_offered_is_a_line_numbered_error(tmp_path: Path) -> None:
    text = "email,name,language\na@example.org,A,it\nb@example.org,B,fr\nc@example.org,C,EN\nd@example.org,D,italiano\n"
    assert problems(tmp_path, text) == [
        (3, "language 'fr' is not offered (it, en)"), (5, "language 'italiano' is not offered (it, en)"),
    ]


def test_the_languages_offered_can_be_chosen(tmp_path: Path) -> None:
    text = "email,language\na@example.org,fr\nb@example.org,\nc@example.org,it\n"
    parsed = read(tmp_path, text, languages=("fr", "it"), default_language="fr")
    assert [(p.email, p.language) for p in parsed.people] == [
        ("a@example.org", "fr"), ("b@example.org", "fr"), ("c@example.org", "it"),
    ]
    assert problems(tmp_path, text.replace("it\n", "en\n"), languages=["fr", "it"], default_language="it") == [
        (4, "language 'en' is not offered (fr, it)"),
    ]


def test_the_default_language_must_be_offered(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.org\n", encoding="utf-8")
    with pytest.raises(StoreError) as caught:
        read_subscribers_csv(path, default_language="fr")
    assert not isinstance(caught.value, CsvImportError)
    assert str(caught.value) == "the default language 'fr' is not one of the languages offered (it, en)"
    with pytest.raises(StoreError, match=r"'de' is not one of the languages offered \(it, fr\)"):
        parse_subscribers_csv("email\na@example.org\n", default_language="de", languages=("it", "fr"))
    with pytest.raises(StoreError, match="no languages offered"):
        parse_subscribers_csv("email\na@example.org\n", languages=())
    with pytest.raises(TypeError):
        parse_subscribers_csv("email\na@example.org\n", default_language="it", languages="it")
    assert [p.language for p in read_subscribers_csv(path, default_language=" EN ").people] == ["en"]


# ---- formula injection --------------------------------------------------------------------------------

DANGEROUS = ["=cmd|' /C calc'!A0", "+39 011 4431111", "-Anna-", "@home", "=HYPERLINK(\"http://x\";\"y\")", "\tTab", "\rCR"]
AMBIGUOUS = ["'Nduja", "'s-Gravenhage", "'=ambiguous", "''+twice", "'", "''", "", "plain", "Anna = Bruno", "a-b"]


@pytest.mark.parametrize("cell", DANGEROUS)
def test_cells_that_start_like_formulas_are_neutralised(cell: str) -> None:
    assert neutralise_formula(cell) == "'" + cell
    assert restore_formula(neutralise_formula(cell)) == cell


@pytest.mark.parametrize("cell", DANGEROUS + AMBIGUOUS)
def test_neutralising_is_undone_exactly(cell: str) -> None:
    safe = neutralise_formula(cell)
    assert not safe.startswith(FORMULA_START)
    assert restore_formula(safe) == cell


def test_cells_that_are_not_formulas_are_left_alone() -> None:
    for cell in ("'Nduja", "'s-Gravenhage", "Anna = Bruno", "", "'", "plain"):
        assert neutralise_formula(cell) == cell and restore_formula(cell) == cell
    assert neutralise_formula("'=ambiguous") == "''=ambiguous"  # the quote is doubled, so it survives a read
    assert restore_formula("'+39 011") == "+39 011"  # as a spreadsheet user types it to mean text


def test_the_export_is_safe_in_a_spreadsheet_and_reads_back_unchanged(tmp_path: Path) -> None:
    names = ["=cmd|' /C calc'!A0", "+39 011", "-Anna-", "@home", "'Nduja", "'=ambiguous", "Plain Name"]
    emails = ["=1+2@example.org", "-dash@example.org", "+plus@example.org", "at@example.org", "'quote@example.org",
              "'=x@example.org", "plain@example.org"]
    since = datetime(2026, 5, 1, 9, 30)
    members = [ListedSubscriber(e, n, "en" if i % 2 else "it", "active", since) for i, (e, n) in enumerate(zip(emails, names))]
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        assert write_subscribers_csv(members, handle) == len(members)

    with path.open(encoding="utf-8", newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_START)]
    raw = path.read_text(encoding="utf-8")
    assert "'=cmd|' /C calc'!A0" in raw and "'+39 011" in raw and "'-Anna-" in raw and "'@home" in raw
    assert ",'Nduja," in raw and "''=ambiguous" in raw and "'=1+2@example.org" in raw

    parsed = read_subscribers_csv(path)
    assert [(p.email, p.name, p.language) for p in parsed.people] == [
        (e, n, "en" if i % 2 else "it") for i, (e, n) in enumerate(zip(emails, names))
    ]


def test_a_store_export_of_formula_like_names_imports_into_another_list(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        wip = store.get_or_create_list(session, "wip")
        people = [store.NewSubscriber("a@example.org", "=SUM(A1:A9)"), store.NewSubscriber("b@example.org", "'Nduja", "en")]
        store.add_subscribers(session, wip, people, source="t")
        session.commit()
        path = tmp_path / "export.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            write_subscribers_csv(store.list_members(session, wip), handle)
        assert "'=SUM(A1:A9)" in path.read_text(encoding="utf-8")
        parsed = read_subscribers_csv(path)
        assert [(p.email, p.name, p.language) for p in parsed.people] == [
            ("a@example.org", "=SUM(A1:A9)", "it"), ("b@example.org", "'Nduja", "en"),
        ]
        other = store.get_or_create_list(session, "other")
        assert store.add_subscribers(session, other, parsed.people, source="import:export.csv").added == 2
        assert [m.name for m in store.list_members(session, other)] == ["=SUM(A1:A9)", "'Nduja"]  # no quote crept in


def test_a_quote_typed_in_a_spreadsheet_is_read_as_text(tmp_path: Path) -> None:
    parsed = read(tmp_path, "email;nome\n'-x@example.org;'+39 011\ny@example.org;'Nduja\n")
    assert [(p.email, p.name) for p in parsed.people] == [("-x@example.org", "+39 011"), ("y@example.org", "'Nduja")]


# ---- what worked before keeps working ------------------------------------------------------------------

def test_bom_semicolons_tabs_duplicates_and_status(tmp_path: Path) -> None:
    text = "E-mail;Nome;Lingua;Stato\nA@example.org;;;\na@example.org;Anna;en;unsubscribed\nb@example.net;Bruno;;\n"
    for separator in (";", "\t"):
        parsed = read(tmp_path, text.replace(";", separator), encoding="utf-8-sig")
        assert (tmp_path / "people.csv").read_bytes().startswith(b"\xef\xbb\xbf")
        assert (parsed.rows, parsed.merged) == (3, 1)
        assert [(p.email, p.name, p.language, p.status) for p in parsed.people] == [
            ("a@example.org", "Anna", "en", "unsubscribed"), ("b@example.net", "Bruno", "it", "active"),
        ]
    assert [p.email for p in parse_subscribers_csv("\ufeffEmail\nz@example.org\n").people] == ["z@example.org"]


def test_every_bad_line_is_reported_and_nothing_is_imported(tmp_path: Path) -> None:
    text = (
        "Indirizzo e-mail;Nome;Cognome;Lingua;Stato\n"
        "ok@example.org;Anna;Rossi;it;active\n"
        "not-an-address;B;B;it;\n"
        "c@example.org;C;C;de;\n"
        "d@example.org;D;D;en;gone\n"
        "e@example.org;E;E\n"
    )
    assert [(line, message.split(" ")[0]) for line, message in problems(tmp_path, text)] == [
        (3, "'not-an-address'"), (4, "language"), (5, "status"), (6, "expected"),
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("email;nome\na@example.org;Anna\nb@example.org;Niccolò\n".encode("latin-1"))
    with pytest.raises(CsvImportError) as caught:
        read_subscribers_csv(path)
    assert caught.value.problems == [(3, "not UTF-8 text (save the file as CSV UTF-8)")]
    assert problems(tmp_path, "") == [(1, "the file is empty; expected a header line with an 'email' column")]
    assert [line for line, _ in problems(tmp_path, 'email,name\n"a@example.org,"A\n')] == [2]
