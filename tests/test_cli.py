"""The `mailer` command as a user runs it: a real process, a real SQLite file, a real SMTP server."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailer.capture import CaptureServer
from mailer.settings import PROJECT_ROOT
from tests.conftest import ISSUE_2026

MAILER = [sys.executable, "-c", "from mailer.cli import main; main()"]


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        MAILER + args, env={**os.environ, **env}, input=stdin, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )


def test_issue_check_lists_warnings_with_lines(env: dict[str, str]) -> None:
    result = run(["issue", "check", str(ISSUE_2026)], env)
    assert result.returncode == 0, result.stderr
    assert "3 sections, 16 items" in result.stdout
    import shutil

    spam = re.search(r"^spam score (-?[\d.]+) \(", result.stdout, re.M)
    if shutil.which("spamassassin"):
        assert spam and float(spam.group(1)) <= 0.5, result.stdout
    else:
        assert "spam score: not checked" in result.stdout
    assert f"{ISSUE_2026}:27: warning: placeholder link [link](#)" in result.stderr
    assert "has no date label" in result.stderr and "section 'Coming Soon' is empty" in result.stderr


def test_a_malformed_issue_is_one_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text('---\nnewsletter: work-in-progress\nissue: "2026-06"\nlanguage: it\nsubject: [oops\n---\n# S\n', encoding="utf-8")
    result = run(["issue", "check", str(bad)], env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{bad}:5: error: front matter is not valid YAML")
    assert "Traceback" not in result.stderr


def test_an_unusable_database_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db.sqlite").write_text("this is not a database", encoding="utf-8")
    result = run(["report"], {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'not-a-db.sqlite'}"})
    assert result.returncode == 1 and result.stderr.startswith("error: database: file is not a database")


def test_preview_writes_html_text_and_eml(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "preview"
    result = run(["preview", str(ISSUE_2026), "--out", str(out)], env)
    assert result.returncode == 0, result.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "anteprima@example.org" in html
    kb = re.search(r"^html .*index\.html \((\d+) KB; Gmail clips past 102 KB\)$", result.stdout, re.M)
    assert kb and abs(int(kb.group(1)) - len(html.encode()) / 1000) < 2, result.stdout
    assert "CITIES MISSION CONFERENCE 2026" in (out / "message.txt").read_text(encoding="utf-8")
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in (out / "message.eml").read_bytes()


def test_subscribers_import_list_export_remove(env: dict[str, str], tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("email;nome;lingua\nanna@example.org;Anna Rossi;it\nANNA@example.org;;\nben@example.net;Ben;en\n", encoding="utf-8")
    result = run(["subscribers", "import", str(people), "--list", "wip"], env)
    assert result.returncode == 0, result.stderr
    assert "3 rows, 1 duplicates merged" in result.stdout and "2 added" in result.stdout
    broken = tmp_path / "broken.csv"
    broken.write_text("email,name\ncarla@example.com,Carla\nnot-an-address,X\n", encoding="utf-8")
    result = run(["subscribers", "import", str(broken), "--list", "wip"], env)
    assert result.returncode == 1 and f"{broken}:3:" in result.stderr and "nothing was imported" in result.stderr
    assert run(["subscribers", "add", "dario@example.com", "--list", "wip", "--name", "Dario"], env).returncode == 0
    assert run(["subscribers", "remove", "ben@example.net", "--list", "wip"], env).returncode == 0
    listed = run(["subscribers", "list", "--list", "wip"], env).stdout.splitlines()
    assert listed[0] == "email,name,language,status,since"
    assert [line.split(",")[:4] for line in listed[1:]] == [
        ["anna@example.org", "Anna Rossi", "it", "active"], ["ben@example.net", "Ben", "en", "unsubscribed"],
        ["dario@example.com", "Dario", "it", "active"],
    ]
    exported = tmp_path / "export.csv"
    assert run(["subscribers", "export", "--list", "wip", "--out", str(exported), "--status", "active"], env).returncode == 0
    assert exported.read_text(encoding="utf-8").count("\n") == 3
    missing = run(["subscribers", "remove", "nobody@example.org"], env)
    assert missing.returncode == 1 and "nobody@example.org is not a subscriber" in missing.stderr


def test_send_asks_then_sends_once_and_reports(env: dict[str, str], tmp_path: Path, relay: CaptureServer) -> None:
    env = {**env, "MAILER_SMTP_URL": relay.url}
    people = tmp_path / "people.csv"
    people.write_text("email,name\n" + "".join(f"p{n}@example.org,P {n}\n" for n in range(20)) + "ghost@example.org,G\n", encoding="utf-8")
    assert run(["subscribers", "import", str(people), "--list", "work-in-progress"], env).returncode == 0

    dry = run(["send", str(ISSUE_2026), "--dry-run"], env)
    assert dry.returncode == 0 and "to send now: 21" in dry.stdout and "dry run: nothing sent" in dry.stdout
    refused = run(["send", str(ISSUE_2026)], env, stdin="n\n")
    assert refused.returncode == 1 and "despite" in refused.stdout and "warning: " in refused.stdout
    assert relay.messages == []

    sent = run(["send", str(ISSUE_2026), "--yes"], env)
    assert sent.returncode == 0, sent.stderr
    assert "sent" in sent.stdout and "User unknown" in sent.stdout
    assert len(relay.messages) == 20
    again = run(["send", str(ISSUE_2026), "--yes"], env)
    assert "nothing to send" in again.stdout and len(relay.messages) == 20

    report = json.loads(run(["report", "--json"], env).stdout)
    assert report["counts"]["sent"] == 20 and report["counts"]["bounced"] == 1 and report["bounced_hard"] == 1
    assert report["top_reasons"][0]["reason"] == "5.1.1 User unknown" and report["rate_per_second"] > 0
    table = run(["report", "2026-05"], env)
    assert "hard bounces (address refused)" in table.stdout and "sending time" in table.stdout


def test_test_send_goes_to_one_address_marked_as_test(env: dict[str, str], relay: CaptureServer) -> None:
    result = run(["send", str(ISSUE_2026), "--test", "redazione@example.org"], {**env, "MAILER_SMTP_URL": relay.url})
    assert result.returncode == 0, result.stderr
    assert [m.recipients for m in relay.messages] == [["redazione@example.org"]]
    assert b"Subject: [PROVA] Work in Progress" in relay.messages[0].data


def test_send_to_an_unreachable_relay_says_so(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "MAILER_SMTP_URL": "smtp://127.0.0.1:9"}
    assert run(["subscribers", "add", "a@example.org", "--list", "work-in-progress"], env).returncode == 0
    result = run(["send", str(ISSUE_2026), "--yes"], env)
    assert result.returncode == 1 and "cannot connect to SMTP relay smtp://127.0.0.1:9" in result.stderr
    assert "1 deliveries left queued" in result.stderr


def test_demo_runs_the_whole_path(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = run(["demo", "--subscribers", "120", "--dir", str(folder)], {"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    assert "120 imported" in result.stdout and "Top bounce reasons" in result.stdout
    assert "5 late reports and complaints" in result.stdout and "3 bounces recorded" in result.stdout
    assert "reported later" in result.stdout and re.search(r"complained \(reported as spam\)\s*│\s*1 │", result.stdout)
    captured = list((folder / "maildir" / "new").iterdir())
    assert 100 < len(captured) < 120  # the demo relay bounces and greylists a few sample addresses
    assert f"captured mail {len(captured)} messages" in result.stdout
    assert (folder / "preview" / "index.html").is_file() and (folder / "demo.sqlite").is_file()


def test_campaigns_over_time(env: dict[str, str], tmp_path: Path, relay: CaptureServer) -> None:
    env = {**env, "MAILER_SMTP_URL": relay.url}
    assert run(["subscribers", "add", "a@example.org", "--list", "work-in-progress"], env).returncode == 0
    assert run(["subscribers", "add", "ghost@example.org", "--list", "work-in-progress"], env).returncode == 0
    from tests.conftest import ISSUE_2021
    for issue in (ISSUE_2021, ISSUE_2026):
        assert run(["send", str(issue), "--yes"], env).returncode == 0
    lines = json.loads(run(["campaigns", "--json"], env).stdout)
    assert [(c["issue"], c["sent"], c["bounced"], c["total"]) for c in lines] == [("2026-05", 1, 0, 1), ("2021-05", 1, 1, 2)]
    assert "2021-05" in run(["campaigns"], env).stdout

    # The commands read through the sqlite3 module alone; the web app reads through its engine: same figures.
    from dataclasses import asdict

    from mailer.app import Mailer
    from mailer.report import to_json
    from mailer.settings import load_settings

    mailer = Mailer(load_settings(env))
    try:
        assert json.loads(mailer.report("2021-05").to_json()) == json.loads(run(["report", "2021-05", "--json"], env).stdout)
        assert json.loads(to_json([asdict(c) for c in mailer.campaign_history()])) == lines
    finally:
        mailer.close()


MODULES_AT_EXIT = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr))\n"
    "from mailer.cli import main\nmain()"
)


def modules_loaded(args: list[str], env: dict[str, str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", MODULES_AT_EXIT, *args], env={**os.environ, **env}, capture_output=True, text=True,
        cwd=PROJECT_ROOT, timeout=120,
    )
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_report_help_and_check_commands_import_no_orm(env: dict[str, str], relay: CaptureServer) -> None:
    """What keeps them starting fast (bench/cli_startup.py): SQLAlchemy and SQLModel take longer to import
    than the whole start-up budget; pydantic comes with SQLModel, and with typer >= 0.29."""
    env = {**env, "MAILER_SMTP_URL": relay.url}
    assert run(["subscribers", "add", "a@example.org", "--list", "work-in-progress"], env).returncode == 0
    assert run(["send", str(ISSUE_2026), "--yes"], env).returncode == 0
    heavy = {"sqlalchemy", "sqlmodel", "pydantic", "alembic"}
    for args in (["--help"], ["report"], ["report", "--json"], ["campaigns"], ["report", "9"], ["issue", "check", str(ISSUE_2026)]):
        assert modules_loaded(args, env) & heavy == set(), args
    assert "sqlalchemy" in modules_loaded(["subscribers", "list"], env)  # the check itself sees an import


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_cleanly_and_the_next_run_finishes_the_job(
    env: dict[str, str], tmp_path: Path, relay: CaptureServer, signum: str
) -> None:
    import signal
    import sqlite3
    import time

    env = {**env, "MAILER_SMTP_URL": relay.url, "MAILER_SMTP_RATE": "25"}  # slow enough to interrupt mid-send
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"p{n}@example.org\n" for n in range(80)), encoding="utf-8")
    assert run(["subscribers", "import", str(people), "--list", "work-in-progress"], env).returncode == 0
    process = subprocess.Popen(
        MAILER + ["send", str(ISSUE_2026), "--yes"], env={**os.environ, **env}, cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while len(relay.messages) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(getattr(signal, signum))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "stopped" in stderr and "Traceback" not in stderr
    db = sqlite3.connect(env["MAILER_DATABASE_URL"].removeprefix("sqlite:///"))
    states = dict(db.execute("SELECT status, count(*) FROM delivery GROUP BY status").fetchall())
    db.close()
    assert set(states) == {"sent", "queued"}, states  # nothing left claimed, nothing lost
    assert states["sent"] == len(relay.messages) and 10 <= states["sent"] < 80

    assert run(["send", str(ISSUE_2026), "--yes"], {**env, "MAILER_SMTP_RATE": "0"}).returncode == 0
    received = [r for m in relay.messages for r in m.recipients]
    assert sorted(received) == sorted(f"p{n}@example.org" for n in range(80))  # each exactly once


def test_resend_uncertain_waits_for_the_operators_yes(env: dict[str, str], relay: CaptureServer) -> None:
    import sqlite3

    env = {**env, "MAILER_SMTP_URL": relay.url}
    assert run(["subscribers", "add", "lost@example.org", "--list", "work-in-progress"], env).returncode == 0
    assert run(["send", str(ISSUE_2026), "--yes"], env).returncode == 0
    path = env["MAILER_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # as if the line had dropped during DATA
        db.execute("UPDATE delivery SET status = 'uncertain'")

    def status() -> str:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT status FROM delivery").fetchone()[0]

    plain = run(["send", str(ISSUE_2026), "--yes"], env)
    assert "nothing to send" in plain.stdout and status() == "uncertain"
    declined = run(["send", str(ISSUE_2026), "--resend-uncertain"], env, stdin="n\n")
    assert declined.returncode == 1 and "may get the issue twice" in declined.stdout and status() == "uncertain"
    accepted = run(["send", str(ISSUE_2026), "--resend-uncertain", "--yes"], env)
    assert accepted.returncode == 0 and status() == "sent"
    assert [r for m in relay.messages for r in m.recipients] == ["lost@example.org", "lost@example.org"]


def test_after_a_hard_kill_only_messages_that_reached_smtp_are_in_doubt(env: dict[str, str], tmp_path: Path, relay: CaptureServer) -> None:
    import signal
    import sqlite3
    import time

    env = {**env, "MAILER_SMTP_URL": relay.url, "MAILER_SMTP_RATE": "25"}
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"k{n}@example.org\n" for n in range(80)), encoding="utf-8")
    assert run(["subscribers", "import", str(people), "--list", "work-in-progress"], env).returncode == 0
    process = subprocess.Popen(MAILER + ["send", str(ISSUE_2026), "--yes"], env={**os.environ, **env}, cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(relay.messages) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    path = env["MAILER_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        claimed = db.execute("SELECT count(*) FROM delivery WHERE status = 'sending'").fetchone()[0]
        db.execute("UPDATE delivery SET lease_until = '2000-01-01 00:00:00.000000' WHERE status = 'sending'")  # time passes
    assert claimed > 0

    assert run(["send", str(ISSUE_2026), "--yes"], {**env, "MAILER_SMTP_RATE": "0"}).returncode == 0
    received = [r for m in relay.messages for r in m.recipients]
    with sqlite3.connect(path) as db:
        uncertain = [r[0] for r in db.execute("SELECT email FROM delivery WHERE status = 'uncertain'")]
        states = dict(db.execute("SELECT status, count(*) FROM delivery GROUP BY status").fetchall())
    assert set(states) <= {"sent", "uncertain"}
    assert len(uncertain) <= 4  # at most one in flight per connection
    assert len(received) == len(set(received))  # nobody twice
    assert set(received) | set(uncertain) == {f"k{n}@example.org" for n in range(80)}  # nobody forgotten


def test_an_operator_lifts_a_suppression_on_record(env: dict[str, str], relay: CaptureServer) -> None:
    import sqlite3

    env = {**env, "MAILER_SMTP_URL": relay.url}
    for address in ("a@example.org", "ghost@example.org"):
        assert run(["subscribers", "add", address, "--list", "work-in-progress"], env).returncode == 0
    assert run(["send", str(ISSUE_2026), "--yes"], env).returncode == 0  # the relay refuses ghost: 550 User unknown
    assert "ghost@example.org" in run(["subscribers", "list", "--status", "bounced"], env).stdout
    lifted = run(["subscribers", "unsuppress", "Ghost@Example.org"], env)
    assert lifted.returncode == 0 and "ghost@example.org: no longer bounced" in lifted.stdout, lifted.stderr
    assert "ghost@example.org" not in run(["subscribers", "list", "--status", "bounced"], env).stdout
    db = sqlite3.connect(env["MAILER_DATABASE_URL"].removeprefix("sqlite:///"))
    events = db.execute("SELECT e.kind, e.method, e.detail FROM subscriber_event e JOIN subscriber s ON s.id = e.subscriber_id "
                        "WHERE s.email = 'ghost@example.org' ORDER BY e.id").fetchall()
    score = db.execute("SELECT bounce_score, bounce_day FROM subscriber WHERE email = 'ghost@example.org'").fetchone()
    db.close()
    assert score == (0.0, None)  # a fresh start
    assert events[-2:] == [("suppressed", "bounce", "hard bounce (mailbox-unknown)"), ("unsuppressed", "admin", "was bounced")]
    again = run(["subscribers", "unsuppress", "ghost@example.org"], env)
    assert again.returncode == 1 and "ghost@example.org is not suppressed (status: active)" in again.stderr
    unknown = run(["subscribers", "unsuppress", "nobody@example.org"], env)
    assert unknown.returncode == 1 and "nobody@example.org is not a subscriber" in unknown.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_check_and_upgrade_on_both_databases(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    else:  # an empty PostgreSQL database: the migrations run from the first
        from tests.conftest import _admin, _on

        request.getfixturevalue("postgresql_template")  # skips (or fails in CI) without a server
        name = f"mailer_empty_{os.getpid()}"
        _admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
        request.addfinalizer(lambda: _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        url = _on(name)
    env = {"MAILER_DATABASE_URL": url}
    from mailer.reader import SCHEMA_HEAD as head

    before = run(["db", "check"], env)
    assert before.returncode == 1 and f"revision none (empty database), the newest is {head}" in before.stdout
    upgraded = run(["db", "upgrade"], env)
    assert upgraded.returncode == 0 and f"upgraded from revision none (empty database) to {head}" in upgraded.stdout, upgraded.stderr
    after = run(["db", "check"], env)
    assert after.returncode == 0 and f"at revision {head}, the newest; tables match the models" in after.stdout
    assert f"already at revision {head}" in run(["db", "upgrade"], env).stdout


def test_a_postgresql_url_without_its_driver_says_which_extra_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "no_psycopg"
    blocker.mkdir()
    (blocker / "psycopg.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    env = {"MAILER_DATABASE_URL": "postgresql+psycopg://mailer@127.0.0.1/mailer", "PYTHONPATH": str(blocker)}
    result = run(["db", "check"], env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pip install 'wip-mailer[postgresql]'" in result.stderr, result.stderr
