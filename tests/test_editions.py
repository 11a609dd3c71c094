"""Language editions: an issue written in Italian and English is one send; each subscriber gets the
edition in their language (else the newsletter's default), the report splits every figure by edition,
and the web archive shows each edition."""
from __future__ import annotations

import email
import json
import shutil
from email import policy
from pathlib import Path

import httpx
import pytest

from mailer.app import Mailer
from mailer.capture import CaptureServer
from mailer.editions import load_editions
from mailer.errors import CampaignError, IssueError
from mailer.report import render_table
from mailer.settings import Settings
from tests.conftest import EXAMPLES, ISSUE_2026
from tests.test_web import rows, run

ISSUE_2026_EN = EXAMPLES / "2026-05-work-in-progress.en.md"


def subject_of(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=policy.default)["Subject"])


def test_the_editions_of_an_issue_are_found_beside_it(tmp_path: Path) -> None:
    editions = load_editions(ISSUE_2026)
    assert editions.languages == ["it", "en"] and editions.by_language["en"].subject == "Work in Progress – May 2026"
    assert load_editions(ISSUE_2026_EN).languages == ["en", "it"]  # whichever file the editor names
    assert editions.digest != load_editions(ISSUE_2026).primary.digest  # one digest over both
    # an unrelated issue in the folder is not an edition; a second Italian one is an error, with its line
    shutil.copy(ISSUE_2026, tmp_path / "a.md")
    (tmp_path / "other.md").write_text(ISSUE_2026.read_text(encoding="utf-8").replace('issue: "2026-05"', 'issue: "2026-06"'), encoding="utf-8")
    assert load_editions(tmp_path / "a.md").languages == ["it"]
    shutil.copy(ISSUE_2026, tmp_path / "b.md")
    with pytest.raises(IssueError, match=r"b\.md:4: error: a second 'it' edition of issue 2026-05 \(the first is .*a\.md\)"):
        load_editions(tmp_path / "a.md")
    # a broken edition is reported with the file's own lines, and stops the send of the whole issue
    (tmp_path / "b.md").write_text(ISSUE_2026_EN.read_text(encoding="utf-8").replace("subject:", "subject: ''\nx:", 1), encoding="utf-8")
    with pytest.raises(IssueError, match=r"b\.md:\d+: "):
        load_editions(tmp_path / "a.md")


def test_each_subscriber_gets_their_edition_and_the_report_splits_by_edition(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "issue"
    folder.mkdir()
    it, en = folder / "2026-05.it.md", folder / "2026-05.en.md"
    shutil.copy(ISSUE_2026, it)
    shutil.copy(ISSUE_2026_EN, en)
    people = {"anna@example.org": "it", "john@example.org": "en", "mary@example.org": "en", "ghost@example.org": "en"}

    async def scenario(client: httpx.AsyncClient, mailer: Mailer, relay: CaptureServer) -> None:
        for address, language in people.items():
            mailer.add_subscriber(address, "work-in-progress", language=language)
        with mailer.session() as session:  # a subscriber whose language has no edition gets the default (it)
            from subscribers import store

            store.find_subscriber(session, "mary@example.org").language = "de"
        from mailer.issue import load_issue

        plan = mailer.plan_send(load_issue(en), None)  # the editor names the English file: the same send
        assert list(plan.composed_by_language) == ["en", "it"]
        campaign = mailer.start_send(plan)
        await mailer.run_send(campaign, plan.composed_by_language)
        got = {m.recipients[0]: subject_of(m.data) for m in relay.messages}
        assert got == {
            "anna@example.org": "Work in Progress – maggio 2026",
            "john@example.org": "Work in Progress – May 2026",
            "mary@example.org": "Work in Progress – maggio 2026",
        }
        english = next(m.data for m in relay.messages if m.recipients[0] == "john@example.org")
        assert b"/archive/work-in-progress/2026-05/en" in english and b"EXPOSED Torino Photo Festival" in english
        assert sorted(rows(mailer, "SELECT email, language FROM delivery")) == [
            ("anna@example.org", "it"), ("ghost@example.org", "en"), ("john@example.org", "en"), ("mary@example.org", "it")]

        report = mailer.report()
        assert {lang: e.counts["sent"] for lang, e in report.editions.items()} == {"it": 2, "en": 1}
        assert report.editions["en"].bounced_hard == 1 and report.editions["it"].bounced_hard == 0
        assert json.loads(report.to_json())["editions"]["en"]["counts"]["bounced"] == 1
        from rich.console import Console

        console = Console(record=True, width=100)
        console.print(render_table(report))
        assert "By edition" in console.export_text()

        # the archive: the default edition at the issue's URL, the other at /<language>, each linking the other
        italian = await client.get("/archive/work-in-progress/2026-05")
        english_page = await client.get("/archive/work-in-progress/2026-05/en")
        assert italian.status_code == english_page.status_code == 200
        assert '<html lang="it"' in italian.text and '<html lang="en"' in english_page.text
        assert 'href="/archive/work-in-progress/2026-05/en" hreflang="en" lang="en"' in italian.text
        assert 'href="/archive/work-in-progress/2026-05" hreflang="it" lang="it"' in english_page.text
        assert "Coming Soon" not in english_page.text and "In Depth" in english_page.text
        assert (await client.get("/archive/work-in-progress/2026-05/de")).status_code == 404
        assert (await client.get("/archive/work-in-progress/2026-05/%3Cscript%3E")).status_code == 404

        # a changed English edition is refused on the next run, as a changed main file is
        en.write_text(en.read_text(encoding="utf-8").replace("Newsletter", "News", 1), encoding="utf-8")
        with pytest.raises(CampaignError, match="or another edition of issue 2026-05 changed since campaign"):
            mailer.start_send(mailer.plan_send(load_issue(it), None))

    run(settings, scenario, rule=lambda r: "550 5.1.1 User unknown" if r.startswith("ghost") else None)
