"""CSV import/export and the store: validation, merging, all-or-nothing imports, suppression respected."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from mailer.database import open_database
from mailer.settings import Settings, load_settings
from subscribers import store
from subscribers.csvio import parse_subscribers_csv, read_subscribers_csv, write_subscribers_csv
from subscribers.errors import CsvImportError, InvalidAddress, UnknownList
from subscribers.models import Subscriber, SubscriberStatus



@pytest.fixture
def settings(any_settings: Settings) -> Settings:
    """These tests run on SQLite and on PostgreSQL."""
    return any_settings

def test_addresses_are_validated_and_normalised() -> None:
    assert store.normalise_address("  Mario.Rossi@Example.ORG ") == "mario.rossi@example.org"
    for bad in ("mario.rossi", "a@b", "two@@example.org", "spaces in@example.org", "città@example.org"):
        with pytest.raises(InvalidAddress):
            store.normalise_address(bad)


def test_duplicates_are_merged_and_gaps_filled() -> None:
    parsed = parse_subscribers_csv("email,name,language\nA@example.org,,\na@example.org,Anna,en\nb@example.net,Bruno,\n")
    assert parsed.rows == 3 and parsed.merged == 1
    assert [(p.email, p.name, p.language) for p in parsed.people] == [
        ("a@example.org", "Anna", "en"), ("b@example.net", "Bruno", "it"),
    ]


def test_spreadsheet_exports_with_semicolons_and_italian_headers() -> None:
    parsed = parse_subscribers_csv("\ufeffE-mail;Nome;Lingua\nc@example.com;Carla D'Angelo;it\n".lstrip("\ufeff"))
    assert [(p.email, p.name) for p in parsed.people] == [("c@example.com", "Carla D'Angelo")]


@pytest.mark.parametrize(
    "text,problems",
    [
        ("email,name\nok@example.org,Ok\nnot-an-address,Bad\n", [(3, "not a valid e-mail address")]),
        ("email,name\nok@example.org,Ok,extra\n", [(2, "expected 2 columns, found 3")]),
        ("email,name,language\nok@example.org,Ok,italiano\n", [(2, "language 'italiano'")]),
        ("name,language\nOk,it\n", [(1, "no 'email' column")]),
        ('email,name\nx@example.org,"A"x\n', [(2, "unreadable CSV")]),
        ("email,name\nx@example.org,A\n\ny@,B\nz@example.org,\"unclosed\n", [(4, "not a valid"), (5, "unreadable CSV")]),
    ],
)
def test_bad_rows_are_reported_with_line_numbers(text: str, problems: list[tuple[int, str]]) -> None:
    with pytest.raises(CsvImportError) as caught:
        parse_subscribers_csv(text, "people.csv")
    found = caught.value.problems
    assert [line for line, _ in found] == [line for line, _ in problems]
    for (_, message), (_, fragment) in zip(found, problems):
        assert fragment in message
    assert "nothing was imported" in str(caught.value) and f"people.csv:{problems[0][0]}:" in str(caught.value)


def test_a_bad_row_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    csv_path = tmp_path / "people.csv"
    csv_path.write_text("email,name\ngood@example.org,Good\nbad@,Bad\n", encoding="utf-8")
    with pytest.raises(CsvImportError):
        read_subscribers_csv(csv_path)
    with Session(engine) as session:
        assert session.exec(select(Subscriber)).all() == []


def test_import_does_not_resubscribe_people_who_left(engine: Engine) -> None:
    with Session(engine) as session:
        wip = store.get_or_create_list(session, "wip")
        people = [store.NewSubscriber("a@example.org", "A"), store.NewSubscriber("b@example.org", "B")]
        assert store.add_subscribers(session, wip, people, source="first").added == 2
        store.unsubscribe(session, store.find_subscriber(session, "a@example.org"), wip, method="admin")
        store.suppress(session.connection(), store.find_subscriber(session, "b@example.org").id or 0, SubscriberStatus.BOUNCED, method="bounce")
        session.commit()
        again = store.add_subscribers(session, wip, people + [store.NewSubscriber("c@example.org")], source="second")
        assert (again.added, again.suppressed) == (1, 2)
        assert store.count_active(session, wip) == 1
        by_hand = store.add_subscribers(session, wip, people[:1], source="admin", resubscribe=True)
        assert by_hand.added == 1 and store.count_active(session, wip) == 2


def test_export_read_back_keeps_people_who_left_out(engine: Engine, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        wip = store.get_or_create_list(session, "wip")
        people = [store.NewSubscriber(e, n, "en") for e, n in
                  [("z@example.org", "Zoé Müller"), ("gone@example.org", "Gone"), ("dead@example.org", "Dead")]]
        store.add_subscribers(session, wip, people, source="t")
        store.unsubscribe(session, store.find_subscriber(session, "gone@example.org"), wip, method="admin")
        store.suppress(session.connection(), store.find_subscriber(session, "dead@example.org").id or 0, SubscriberStatus.BOUNCED, method="bounce")
        session.commit()
        buffer = io.StringIO()
        assert write_subscribers_csv(store.list_members(session, wip), buffer) == 3
    parsed = parse_subscribers_csv(buffer.getvalue())  # exactly as exported
    assert {(p.email, p.name, p.status) for p in parsed.people} == {
        ("z@example.org", "Zoé Müller", "active"), ("gone@example.org", "Gone", "unsubscribed"),
        ("dead@example.org", "Dead", "bounced"),
    }
    from mailer.database import open_database

    fresh = open_database(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    with Session(fresh) as session:
        wip = store.get_or_create_list(session, "wip")
        counts = store.add_subscribers(session, wip, parsed.people, source="import:export.csv")
        session.commit()
        assert (counts.added, counts.suppressed) == (1, 2)
        assert store.count_active(session, wip) == 1
        assert {m.email: m.status for m in store.list_members(session, wip)} == {
            "z@example.org": "active", "gone@example.org": "unsubscribed", "dead@example.org": "bounced",
        }
    fresh.dispose()


def test_unknown_list_names_the_known_ones(engine: Engine) -> None:
    with Session(engine) as session:
        store.get_or_create_list(session, "wip")
        with pytest.raises(UnknownList, match="lists: wip"):
            store.get_list(session, "wpi")


def test_an_old_export_does_not_undo_a_resubscription(engine: Engine) -> None:
    with Session(engine) as session:
        wip = store.get_or_create_list(session, "wip")
        store.add_subscribers(session, wip, [store.NewSubscriber("back@example.org", "Back")], source="form")
        session.commit()
        old_export = [store.NewSubscriber("back@example.org", "Back", "it", "unsubscribed")]
        counts = store.add_subscribers(session, wip, old_export, source="import:old.csv")
        session.commit()
        assert (counts.suppressed, counts.updated) == (0, 1)
        assert store.count_active(session, wip) == 1


def test_a_bounced_row_in_a_file_keeps_an_existing_person_off_that_list_only(engine: Engine) -> None:
    with Session(engine) as session:
        list_a, list_c = store.get_or_create_list(session, "a"), store.get_or_create_list(session, "c")
        store.add_subscribers(session, list_a, [store.NewSubscriber("alice@example.org", "Alice")], source="form")
        counts = store.add_subscribers(session, list_c, [store.NewSubscriber("alice@example.org", "Alice", "it", "bounced")], source="old.csv")
        session.commit()
        assert counts.suppressed == 1
        assert store.count_active(session, list_a) == 1 and store.count_active(session, list_c) == 0
        assert store.find_subscriber(session, "alice@example.org").status == SubscriberStatus.ACTIVE


def _store_state(engine: Engine) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    from sqlalchemy import text

    with engine.connect() as conn:
        people = {tuple(map(str, r)) for r in conn.execute(text("SELECT email, name, language, status, consent_source FROM subscriber"))}
        places = {tuple(map(str, r)) for r in conn.execute(text(
            "SELECT s.email, l.name, m.status FROM subscription m JOIN subscriber s ON s.id = m.subscriber_id "
            "JOIN mailing_list l ON l.id = m.list_id"
        ))}
    return people, places


def test_the_streaming_import_keeps_every_rule_of_add_subscribers(settings: Settings, tmp_path: Path) -> None:
    """Old and new paths on the same store and file, compared: who is on which list, with which status."""
    import random

    from mailer.app import Mailer
    from subscribers.csvio import parse_subscribers_csv

    draw = random.Random(5)
    before = [f"p{n}@example.org" for n in range(60)]
    rows = ["email,name,language,status"]
    for n in range(120):  # people already in the store and new ones; repeats; every status; empty cells
        email = f"p{draw.randrange(90)}@example.org"
        rows.append(f"{email},{draw.choice(['', 'Anna', 'Bruno'])},{draw.choice(['', 'it', 'en'])},"
                    f"{draw.choice(['', 'active', 'active', 'unsubscribed', 'bounced', 'complained'])}")
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    states, counts = [], []
    for path in ("old", "new"):
        url = settings.database_url if path == "old" else f"sqlite:///{tmp_path / 'new.sqlite'}"
        if path == "new" and settings.database_url.startswith("postgresql"):
            from tests.conftest import _admin, _on

            name = f"mailer_import_{os.getpid()}"
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
            url = _on(name)
        engine = open_database(url)
        with Session(engine) as session:  # the same store before the import: some left, one bounced, one elsewhere
            wip, other = store.get_or_create_list(session, "work-in-progress"), store.get_or_create_list(session, "altro")
            store.add_subscribers(session, wip, [store.NewSubscriber(e, "Prima", "it") for e in before[:40]], source="t")
            store.add_subscribers(session, other, [store.NewSubscriber(e, "", "en") for e in before[40:]], source="t")
            session.commit()
            for e in before[:8]:
                store.unsubscribe(session, store.find_subscriber(session, e), wip, method="test")
            for e in before[8:12]:
                store.find_subscriber(session, e).status = "bounced"
            session.commit()
        if path == "old":
            parsed = parse_subscribers_csv((tmp_path / "people.csv").read_text(), default_language="it")
            with Session(engine) as session:
                result = store.add_subscribers(session, store.get_list(session, "work-in-progress"), parsed.people, source="import:people.csv")
                session.commit()
            counts.append((parsed.rows, parsed.merged, result))
        else:
            imported = Mailer(load_settings({"MAILER_DATABASE_URL": url}), engine=engine).import_subscribers(tmp_path / "people.csv", "work-in-progress")
            counts.append((imported.rows, imported.merged, imported.counts))
        states.append(_store_state(engine))
        engine.dispose()
    assert states[0] == states[1]
    assert counts[0] == counts[1]


def test_a_large_bad_file_lists_its_first_problems_counts_the_rest_and_imports_nothing(settings: Settings, tmp_path: Path) -> None:
    from mailer.app import Mailer

    lines = ["email,name"] + [f"ok{n}@example.org,Ok" for n in range(1000)] + [f"bad{n},Bad" for n in range(300)]
    (tmp_path / "people.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (tmp_path / "people.csv").open("ab") as out:
        out.write(b"late@example.org,Nicol\xf2\n")  # Latin-1, not UTF-8, at line 1302
    mailer = Mailer(settings)
    with pytest.raises(CsvImportError) as caught:
        mailer.import_subscribers(tmp_path / "people.csv", "work-in-progress")
    text = str(caught.value)
    assert f"{tmp_path / 'people.csv'}:1002: 'bad0' is not a valid e-mail address" in text
    assert ":0: ... and 101 more" in text  # 200 listed, 100 more bad addresses and the undecodable line
    with Session(mailer.engine) as session:
        assert session.exec(select(Subscriber)).all() == []
    mailer.close()
