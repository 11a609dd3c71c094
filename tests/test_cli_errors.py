"""What a user reads when something is wrong, or nearly so: one line on stderr, exit status 1, no traceback;
and the figures and states the CLI prints agree with the database.

Every command under test runs as a real process (tests.test_cli's `run`). The databases they read are set
up once per module through the application core, which is what the CLI calls, so the suite stays quick.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from mailer.app import Mailer
from mailer.capture import CaptureServer, Rule, capture_in_thread
from mailer.issue import load_issue
from mailer.settings import PROJECT_ROOT, load_settings
from tests.conftest import ISSUE_2026
from tests.test_cli import MAILER, run

LONG_LIST = "relazioni-internazionali-delegazioni-estere-e-gemellaggi"


def one_line_error(result: subprocess.CompletedProcess[str], *, code: int = 1) -> str:
    """The one line a failing command wrote on stderr, once its exit status and the absence of a traceback are checked."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@contextmanager
def mailer_for(database_url: str, **env: str) -> Iterator[Mailer]:
    mailer = Mailer(load_settings({"MAILER_DATABASE_URL": database_url, **env}))
    try:
        yield mailer
    finally:
        mailer.close()


def capture_relay(rule: Rule) -> AbstractContextManager[CaptureServer]:
    """A capture server answering RCPT by `rule`, in its own thread's event loop."""
    return capture_in_thread(rule=rule)


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A database with lists 'work-in-progress' (en@ in English, a@, and solo@ who left it, their only list)
    and 'wip' (b@). Tests only add to it in ways the others do not look at."""
    folder = tmp_path_factory.mktemp("people")
    url = f"sqlite:///{folder / 'people.sqlite'}"
    csv = folder / "people.csv"
    csv.write_text("email,name,language\nen@example.org,Emma,en\na@example.org,Anna,it\nsolo@example.org,Solo,it\n", encoding="utf-8")
    with mailer_for(url) as mailer:
        mailer.import_subscribers(csv, "work-in-progress")
        mailer.add_subscriber("b@example.org", "wip")
        mailer.remove_subscriber("solo@example.org", "work-in-progress")
    return {"MAILER_DATABASE_URL": url, "COLUMNS": "120"}


@pytest.fixture(scope="module")
def deferred(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A database whose one campaign, to a list with a long name, has only deferred deliveries left:
    the relay greylisted everyone."""
    folder = tmp_path_factory.mktemp("deferred")
    url = f"sqlite:///{folder / 'deferred.sqlite'}"
    with capture_relay(lambda r: "451 4.7.1 Greylisted, try again later") as server:
        with mailer_for(url, MAILER_SMTP_URL=server.url) as mailer:
            for n in range(3):
                mailer.add_subscriber(f"g{n}@example.org", LONG_LIST)
            plan = mailer.plan_send(load_issue(ISSUE_2026), LONG_LIST)
            campaign = mailer.start_send(plan)
            outcome = asyncio.run(mailer.run_send(campaign, plan.composed_by_language))
    assert outcome.summary.counts == {"deferred": 3}
    return {"MAILER_DATABASE_URL": url, "COLUMNS": "80"}


# ---- files and databases the CLI cannot use ---------------------------------------------------------------

def test_export_to_a_folder_that_does_not_exist(people: dict[str, str]) -> None:
    line = one_line_error(run(["subscribers", "export", "--list", "wip", "--out", "/nonexistent/x.csv"], people))
    assert line.startswith("error: cannot write /nonexistent/x.csv")


def test_preview_into_a_place_that_cannot_be_written(env: dict[str, str]) -> None:
    line = one_line_error(run(["preview", str(ISSUE_2026), "--out", "/proc/x"], env))
    assert line.startswith("error: cannot write the preview to /proc/x")


def test_a_postgresql_server_that_is_not_there() -> None:
    line = one_line_error(run(["report"], {"MAILER_DATABASE_URL": "postgresql://u:secret@127.0.0.1:9/x"}))
    assert line.startswith("error: cannot reach the database postgresql+psycopg://u:***@127.0.0.1:9/x: ") and "secret" not in line


@pytest.mark.parametrize("url", ["sqlite:////proc/nope/x.sqlite", "sqlite:////proc/x.sqlite"])
def test_sqlite_where_nothing_can_be_written(url: str) -> None:
    line = one_line_error(run(["report"], {"MAILER_DATABASE_URL": url}))
    assert line.startswith("error: ") and "database" in line and url in line


# ---- subscribers -----------------------------------------------------------------------------------------

def test_an_unknown_status_names_the_accepted_ones(people: dict[str, str]) -> None:
    line = one_line_error(run(["subscribers", "list", "--status", "nonsense"], people))
    assert "'nonsense'" in line
    assert all(s in line for s in ("active", "pending", "unsubscribed", "bounced", "complained"))


def test_removing_from_a_list_someone_is_not_on(people: dict[str, str]) -> None:
    line = one_line_error(run(["subscribers", "remove", "a@example.org", "--list", "wip"], people))
    assert line == "error: a@example.org is not subscribed to list 'wip'"


def test_adding_someone_to_another_list_keeps_their_language(people: dict[str, str]) -> None:
    added = run(["subscribers", "add", "en@example.org", "--list", "second"], people)
    assert added.returncode == 0, added.stderr
    listed = run(["subscribers", "list", "--list", "second"], people)
    assert [line.split(",")[:4] for line in listed.stdout.splitlines()[1:]] == [["en@example.org", "Emma", "en", "active"]]


def test_someone_who_left_their_only_list_is_unsubscribed_across_lists(people: dict[str, str]) -> None:
    left = run(["subscribers", "list", "--status", "unsubscribed"], people)
    active = run(["subscribers", "list", "--status", "active"], people)
    assert left.returncode == 0 and active.returncode == 0, left.stderr + active.stderr
    assert [line.split(",")[0] for line in left.stdout.splitlines()[1:]] == ["solo@example.org"]
    assert "solo@example.org" not in active.stdout and "en@example.org" in active.stdout


# ---- sending ---------------------------------------------------------------------------------------------

def test_send_to_an_unknown_list(people: dict[str, str]) -> None:
    line = one_line_error(run(["send", str(ISSUE_2026), "--list", "nolist", "--yes"], people))
    assert line.startswith("error: no list named 'nolist'") and "wip" in line and "work-in-progress" in line


def test_send_of_a_malformed_issue_names_file_and_line(people: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text('---\nnewsletter: work-in-progress\nissue: "2026-06"\nlanguage: it\nsubject: [oops\n---\n# S\n', encoding="utf-8")
    line = one_line_error(run(["send", str(bad), "--yes"], people))
    assert line.startswith(f"{bad}:5: error: front matter is not valid YAML")


def test_the_confirmation_shows_each_warning_once_with_file_and_line(people: dict[str, str]) -> None:
    refused = run(["send", str(ISSUE_2026)], people, stdin="n\n")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    warnings = [line for line in refused.stdout.splitlines() if "warning:" in line]
    assert warnings and len(warnings) == len(set(warnings))
    editions = "|".join(re.escape(str(p)) for p in (ISSUE_2026, ISSUE_2026.with_suffix(".en.md")))  # each edition's own file
    assert all(re.match(rf"({editions}):\d+: warning: ", w) for w in warnings), warnings
    assert any(".en.md:" in w for w in warnings) and any(w.startswith(str(ISSUE_2026) + ":") for w in warnings)
    assert not any(w.count("warning:") > 1 or w.startswith("warning:") for w in warnings)
    assert f"despite {len(warnings)} warning(s)?" in refused.stdout


def test_a_campaign_left_with_deferred_deliveries_waits_for_retries(deferred: dict[str, str]) -> None:
    result = run(["report"], deferred)
    assert result.returncode == 0, result.stderr
    assert re.search(r"waiting for retries until \d{4}-\d\d-\d\d \d\d:\d\d UTC", result.stdout)


def test_campaigns_fit_80_columns(deferred: dict[str, str]) -> None:
    result = run(["campaigns"], deferred)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    header, row = lines[1].split(), lines[2].split()
    assert header == ["id", "issue", "list", "started", "status", "sent", "bounced", "deferred", "failed", "unsub"]
    assert row[1] == "2026-05" and re.fullmatch(r"\d{4}-\d\d-\d\d", row[3]) and row[5:] == ["0/3", "0", "3", "0", "0"]


def test_json_timestamps_are_iso_8601(deferred: dict[str, str]) -> None:
    campaigns = run(["campaigns", "--json"], deferred)
    report = run(["report", "--json"], deferred)
    assert campaigns.returncode == 0 and report.returncode == 0, campaigns.stderr + report.stderr
    stamps = [json.loads(campaigns.stdout)[0]["started_at"]] + [json.loads(report.stdout)[k] for k in ("started_at", "retry_at")]
    for stamp in stamps:
        assert "T" in stamp and datetime.fromisoformat(stamp).tzinfo is not None, stamp
    assert json.loads(report.stdout)["state"].startswith("waiting for retries until")


def test_after_ctrl_c_the_count_left_queued_is_what_the_database_holds(
    env: dict[str, str], tmp_path: Path, relay: CaptureServer
) -> None:
    env = {**env, "MAILER_SMTP_URL": relay.url, "MAILER_SMTP_RATE": "25"}  # slow enough to interrupt mid-send
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"q{n}@example.org\n" for n in range(60)), encoding="utf-8")
    with mailer_for(env["MAILER_DATABASE_URL"]) as mailer:
        mailer.import_subscribers(people, "work-in-progress")
    process = subprocess.Popen(
        MAILER + ["send", str(ISSUE_2026), "--yes"], env={**os.environ, **env}, cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while len(relay.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    said = re.search(r"(\d+) deliveries left queued", stderr)
    assert said, stderr
    db = sqlite3.connect(env["MAILER_DATABASE_URL"].removeprefix("sqlite:///"))
    queued = db.execute("SELECT count(*) FROM delivery WHERE status = 'queued'").fetchone()[0]
    db.close()
    assert int(said.group(1)) == queued and 0 < queued < 60


def test_the_progress_bar_rate_is_the_reports_rate(env: dict[str, str], tmp_path: Path, relay: CaptureServer) -> None:
    """Both count sent messages only (not bounces) per second of this run, so for one run they agree."""
    env = {**env, "MAILER_SMTP_URL": relay.url, "MAILER_SMTP_RATE": "15"}
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"r{n}@example.org\nghost{n}@example.org\n" for n in range(8)), encoding="utf-8")
    with mailer_for(env["MAILER_DATABASE_URL"]) as mailer:
        mailer.import_subscribers(people, "work-in-progress")
    sent = run(["send", str(ISSUE_2026), "--yes"], env)
    assert sent.returncode == 0, sent.stderr
    bar = re.search(r"16/16\s+(\d+\.\d) sent/s", sent.stdout)
    report = json.loads(run(["report", "--json"], env).stdout)
    assert bar and report["counts"]["sent"] == 8 and report["counts"]["bounced"] == 8, sent.stdout
    assert float(bar.group(1)) == pytest.approx(report["rate_per_second"], rel=0.1)  # all results per second would be twice that
    assert f"{report['rate_per_second']:.1f} sent/s" in sent.stdout  # the table printed after the bar


def test_the_cli_module_imports_nothing_heavy() -> None:
    """`mailer --help` and argument errors answer at once: the commands import what they need themselves."""
    heavy = ("asyncio", "sqlalchemy", "sqlmodel", "alembic", "rich", "jinja2", "aiosmtplib", "ssl", "subscribers")
    probe = f"import sys, mailer.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith('mailer.') and m != 'mailer.cli'))"
    result = subprocess.run([MAILER[0], "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_admin_add_user_without_a_terminal_says_how(env: dict[str, str]) -> None:
    result = run(["admin", "add-user", "redazione"], env, stdin="")
    assert result.returncode == 1 and one_line_error(result) == (
        "error: no terminal to ask for the password on: pipe it in with --password-stdin"
    )
    short = run(["admin", "add-user", "redazione", "--password-stdin"], env, stdin="short\n")
    assert one_line_error(short) == "error: the password must be at least 12 characters long"
    ok = run(["admin", "add-user", "redazione", "--password-stdin"], env, stdin="a long enough password\n")
    assert ok.returncode == 0 and "operator 'redazione' created" in ok.stdout
