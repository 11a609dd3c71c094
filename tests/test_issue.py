"""Issue files: both seed issues load whole; malformed files give file:line errors; warnings name their line."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailer.errors import IssueError
from mailer.issue import load_issue, parse_issue
from tests.conftest import ISSUE_2021, ISSUE_2026

SEEDS = Path(__file__).resolve().parents[1] / "examples" / "seeds"  # the issues as they were mailed


def test_2026_issue_has_every_section_item_and_date_label() -> None:
    issue = load_issue(ISSUE_2026)
    assert [s.title for s in issue.sections] == ["Top News maggio 2026", "Approfondimenti", "Coming Soon"]
    titles = [i.title for i in issue.sections[0].items]
    assert titles[0] == "Newsletter" and titles[-1] == "Appuntamenti sportivi internazionali"
    assert len(titles) == 13
    labels = {i.title: i.date_label for i in issue.items}
    assert labels["EXPOSED Torino Photo Festival"] == "9 aprile - 2 giugno"
    assert labels["CITIES MISSION CONFERENCE 2026"] == "27-29 maggio"
    assert labels["In primo piano"] == "21 aprile"
    assert [i.title for i in issue.sections[1].items] == ["Delegazioni ricevute", "Missioni all'estero", "In primo piano"]
    missions = issue.sections[1].items[1].body
    assert missions.count("- **") == 3 and "**Tokyo** | 26-30 aprile |" in missions
    assert issue.subject == "Work in Progress – maggio 2026" and issue.issue == "2026-05"


def test_2021_issue_has_every_item_with_its_date_label() -> None:
    issue = load_issue(ISSUE_2021)
    assert len(issue.items) == 14
    assert all(item.date_label for item in issue.items)
    assert issue.contact and issue.contact[0] == "Gabinetto della Sindaca"
    bodies = "\n".join(item.body for item in issue.items)
    for target in ("http://www.alpine-space.eu/connect2021", "http://mediterraneabiennial.org", "mailto:evs.torino@gmail.com"):
        assert f"]({target})" in bodies


@pytest.mark.parametrize("seed,example", [("2021-05-work-in-progress.txt", ISSUE_2021), ("2026-05-work-in-progress.txt", ISSUE_2026)])
def test_every_seed_link_target_is_kept(seed: str, example: Path) -> None:
    seed_text = (SEEDS / seed).read_text(encoding="utf-8")
    body = example.read_text(encoding="utf-8")
    for target in re.findall(r"\]\((http[^)]+|mailto:[^)]+)\)", seed_text):
        if "international.affairs" in target or "relint" in target:
            continue  # footer links live in config and front matter
        assert f"]({target})" in body


def test_warnings_name_lines_of_placeholders_missing_dates_and_empty_parts() -> None:
    issue = load_issue(ISSUE_2026)
    messages = [(w.line, w.message) for w in issue.warnings]
    lines = ISSUE_2026.read_text(encoding="utf-8").split("\n")
    placeholder_lines = [n for n, m in messages if m.startswith("placeholder link")]
    assert placeholder_lines and all("](#)" in lines[n - 1] for n in placeholder_lines)
    assert any("'Appuntamenti sportivi internazionali' has no date label" in m for _, m in messages)
    assert any("section 'Coming Soon' is empty" in m for _, m in messages)
    empty = parse_issue(FRONT + "# S\n\n## Empty one\n*1 maggio*\n\n## Next\n*2 maggio*\n\nText.\n", "x.md")
    assert [(w.line, w.message) for w in empty.warnings] == [(10, "item 'Empty one' has no text")]


FRONT = '---\nnewsletter: work-in-progress\nissue: "2026-06"\nlanguage: it\nsubject: "S"\npreheader: "P"\n---\n'


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ("# no front matter\n", 1, "must start with front matter"),
        ('---\nnewsletter: x\nissue: "1"\n', 1, "not closed"),
        ('---\nnewsletter: work-in-progress\nissue: [2026\nlanguage: it\n---\n# S\n', 4, "not valid YAML"),
        ('---\nnewsletter: work-in-progress\nissue: "2026-06"\nlanguage: it\n---\n# S\n', 5, "lacks 'subject'"),
        ('---\nnewsletter: work-in-progress\nissue: 2026\nlanguage: it\nsubject: S\n---\n# S\n', 3, "'issue' must be text"),
        ('---\nnewsletter: work-in-progress\nissue: "1"\nlanguage: fr\nsubject: S\n---\n# S\n', 4, "language 'fr'"),
        (FRONT + "Intro without a section\n\n# S\n", 8, "text before the first"),
        (FRONT + "## Item first\n*1 maggio*\n\nBody\n", 8, "comes before any '#' section"),
        (FRONT, 8, "no sections"),
    ],
)
def test_malformed_issue_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "broken.md"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(IssueError) as caught:
        load_issue(path)
    first = caught.value.problems[0]
    assert (first.path, first.line) == (str(path), line), str(caught.value)
    assert fragment in first.message
    assert str(caught.value).startswith(f"{path}:{line}: error:")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(IssueError, match="cannot read issue file"):
        load_issue(tmp_path / "missing.md")
    latin = tmp_path / "latin1.md"
    latin.write_bytes(FRONT.encode() + "# Città\n".encode("latin-1"))
    with pytest.raises(IssueError, match=r"latin1.md:8: error: file is not UTF-8"):
        load_issue(latin)


def test_headings_inside_code_are_not_sections() -> None:
    issue = parse_issue(FRONT + "# S\n\n## Item\n*1 maggio*\n\n```\n# not a section\n```\n", "x.md")
    assert len(issue.sections) == 1 and "# not a section" in issue.items[0].body


def test_front_matter_text_is_one_line_and_duplicates_are_refused(tmp_path: Path) -> None:
    folded = parse_issue(FRONT.replace('subject: "S"', "subject: >\n  Work in Progress\n  giugno 2026") + "# S\n", "x.md")
    assert folded.subject == "Work in Progress giugno 2026"
    with pytest.raises(IssueError, match=r"x.md:6: error: front matter is not valid YAML: key 'subject' appears twice"):
        parse_issue(FRONT.replace('subject: "S"', 'subject: "S"\nsubject: "T"') + "# S\n", "x.md")
    with pytest.raises(IssueError, match=r"x.md:5: error: 'subject' holds control characters"):
        parse_issue(FRONT.replace('subject: "S"', 'subject: "S\\x07"') + "# S\n", "x.md")
    bom = tmp_path / "bom.md"
    bom.write_bytes(b"\xef\xbb\xbf" + (FRONT + "# S\n").encode())
    assert load_issue(bom).subject == "S"


def test_an_unconfigured_newsletter_is_reported_at_its_line(tmp_path: Path) -> None:
    from mailer.campaign import newsletter_for
    from mailer.settings import load_settings

    issue = parse_issue(FRONT.replace("work-in-progress", "work-in-progres") + "# S\n", "x.md")
    with pytest.raises(IssueError, match=r"x.md:2: error: newsletter 'work-in-progres' is not configured"):
        newsletter_for(load_settings({}), issue)


def test_blank_required_values_fail_and_emoji_pass() -> None:
    with pytest.raises(IssueError, match=r"x.md:5: error: front matter lacks 'subject'"):
        parse_issue(FRONT.replace('subject: "S"', 'subject: "   "') + "# S\n", "x.md")
    family = parse_issue(FRONT.replace('subject: "S"', 'subject: "Famiglie \U0001F468\u200d\U0001F469\u200d\U0001F467 in\u00adsieme"') + "# S\n", "x.md")
    assert "\u200d" in family.subject
