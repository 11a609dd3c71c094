"""Issue files: both seed issues load whole; malformed files give file:line errors; warnings name their line."""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from mailer.errors import IssueError
from mailer.issue import MAX_ISSUE_BYTES, load_issue, parse_issue
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
        ('---\nnewsletter: work-in-progress\nissue: "2026-06"\nlanguage: it\n---\n# S\n', 5, "front matter is missing 'subject'"),
        ('---\nnewsletter: work-in-progress\nissue: 2026\nlanguage: it\nsubject: S\n---\n# S\n', 3, "issue id '2026' is not of the form YYYY-MM"),
        ('---\nnewsletter: work-in-progress\nissue: "2026-06"\nlanguage: fr\nsubject: S\n---\n# S\n', 4, "language 'fr'"),
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
    from mailer.app import Mailer
    from mailer.settings import load_settings

    issue = parse_issue(FRONT.replace("work-in-progress", "work-in-progres") + "# S\n", "x.md")
    with pytest.raises(IssueError, match=r"x.md:2: error: newsletter 'work-in-progres' is not configured"):
        Mailer(load_settings({})).newsletter_for(issue)


def test_blank_required_values_fail_and_emoji_pass() -> None:
    with pytest.raises(IssueError, match=r"x.md:5: error: front matter 'subject' is empty"):
        parse_issue(FRONT.replace('subject: "S"', 'subject: "   "') + "# S\n", "x.md")
    family = parse_issue(FRONT.replace('subject: "S"', 'subject: "Famiglie \U0001F468\u200d\U0001F469\u200d\U0001F467 in\u00adsieme"') + "# S\n", "x.md")
    assert "\u200d" in family.subject


def errors_of(path: Path) -> list[tuple[int | None, str]]:
    with pytest.raises(IssueError) as caught:
        load_issue(path)
    assert all(p.path == str(path) and p.severity == "error" for p in caught.value.problems)
    return [(p.line, p.message) for p in caught.value.problems]


def test_one_run_lists_every_front_matter_and_body_error_by_line(tmp_path: Path) -> None:
    path = tmp_path / "many.md"
    path.write_text(
        "---\n"
        "newsletter: work-in-progress\n"
        'issue: "maggio"\n'  # 3
        "language: fr\n"  # 4
        'preheader: "P =?utf-8?b?SGk=?="\n'  # 5
        "---\n"  # 6: subject is missing
        "Text before any section.\n"  # 7
        "\n"
        "# S\n"
        "\n"
        "## Item\n"
        "*1 maggio*\n"
        "\n"
        "Some <b>bold</b> text.\n",  # 14
        encoding="utf-8",
    )
    assert errors_of(path) == [
        (3, "issue id 'maggio' is not of the form YYYY-MM, a year and a month 01-12 (e.g. \"2026-05\")"),
        (4, "language 'fr' is not one of it, en"),
        (5, "'preheader' holds an RFC 2047 encoded word (=?...?=); write the text itself"),
        (6, "front matter is missing 'subject'"),
        (7, "text before the first '#' section heading"),
        (14, "raw HTML is not allowed in an issue (write Markdown)"),
    ]


def test_body_errors_are_listed_beside_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "yaml.md"
    path.write_text('---\nnewsletter: work-in-progress\nsubject: [oops\n---\n## Item first\n*1 maggio*\n\nBody\n', encoding="utf-8")
    (yaml_line, yaml_error), body = errors_of(path)
    assert yaml_line == 3 and yaml_error.startswith("front matter is not valid YAML")
    assert body == (5, "item 'Item first' comes before any '#' section")


@pytest.mark.parametrize("subject_line", ['subject: ""', "subject: '  '", "subject:", "subject: >\n  \n"])
def test_an_empty_key_is_empty_and_an_absent_key_is_missing(tmp_path: Path, subject_line: str) -> None:
    empty = tmp_path / "empty.md"
    empty.write_text(FRONT.replace('subject: "S"', subject_line) + "# S\n", encoding="utf-8")
    assert errors_of(empty) == [(5, "front matter 'subject' is empty")]
    absent = tmp_path / "absent.md"
    absent.write_text(FRONT.replace('subject: "S"\n', "") + "# S\n", encoding="utf-8")
    assert errors_of(absent) == [(6, "front matter is missing 'subject'")]


@pytest.mark.parametrize(
    "value,shown",
    [
        ('"2026-5"', "2026-5"),
        ('"2026-13"', "2026-13"),
        ('"2026-00"', "2026-00"),
        ('"26-05"', "26-05"),
        ('"2026-05-01"', "2026-05-01"),
        ("2026-05-01", "2026-05-01"),  # unquoted: YAML reads a date
        ("202605", "202605"),  # unquoted: YAML reads a number
        ('"2026-05x"', "2026-05x"),
        ('"x2026-05"', "x2026-05"),
        ('"\u0662\u0660\u0662\u0666-05"', "\u0662\u0660\u0662\u0666-05"),  # digits, but not ASCII ones
    ],
)
def test_issue_id_must_be_year_and_month(tmp_path: Path, value: str, shown: str) -> None:
    path = tmp_path / "id.md"
    path.write_text(FRONT.replace('issue: "2026-06"', f"issue: {value}") + "# S\n", encoding="utf-8")
    assert errors_of(path) == [(3, f"issue id '{shown}' is not of the form YYYY-MM, a year and a month 01-12 (e.g. \"2026-05\")")]


@pytest.mark.parametrize("value", ['"2026-01"', '"1999-12"', "2026-10"])
def test_valid_issue_ids_load_quoted_or_not(tmp_path: Path, value: str) -> None:
    path = tmp_path / "id.md"
    path.write_text(FRONT.replace('issue: "2026-06"', f"issue: {value}") + "# S\n", encoding="utf-8")
    assert load_issue(path).issue == value.strip('"')


def test_examples_keep_loading_with_year_month_ids() -> None:
    assert (load_issue(ISSUE_2026).issue, load_issue(ISSUE_2021).issue) == ("2026-05", "2021-05")


def test_raw_html_is_an_error_on_each_line_that_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "html.md"
    path.write_text(
        FRONT  # lines 1-7
        + "# S\n"  # 8
        + "\n"
        + "## Item\n"  # 10
        + "*1 maggio*\n"
        + "\n"
        + "Plain first line,\n"  # 13
        + 'then <a href="https://evil.example">a tag</a> and <br> on one line.\n'  # 14
        + "\n"
        + "<div>\n"  # 16
        + "block\n"
        + "</div>\n"
        + "\n"
        + "<!-- a comment -->\n",  # 20
        encoding="utf-8",
    )
    assert errors_of(path) == [(line, "raw HTML is not allowed in an issue (write Markdown)") for line in (14, 16, 20)]


def test_angle_brackets_autolinks_and_code_are_not_raw_html(tmp_path: Path) -> None:
    path = tmp_path / "fine.md"
    path.write_text(
        FRONT
        + "# S\n\n## Item\n*1 maggio*\n\n"
        + "If a < b and c > d, write to <relint@comune.torino.it> or see <https://www.comune.torino.it/relint>.\n\n"
        + "Inline `<b>` code and a fence:\n\n```\n<div>not html</div>\n```\n\n    <p>indented code</p>\n",
        encoding="utf-8",
    )
    issue = load_issue(path)
    assert "<relint@comune.torino.it>" in issue.items[0].body
    assert not [w for w in issue.warnings if "HTML" in w.message]


def test_a_3_mb_issue_file_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.md"
    path.write_bytes((FRONT + "# S\n\n" + "parole " * 500_000).encode()[:3_000_000])
    assert path.stat().st_size == 3_000_000
    with pytest.raises(IssueError) as caught:
        load_issue(path)
    # '3 MB' comes from stat: a bounded read would only have seen 2,000,001 bytes
    assert str(caught.value) == f"{path}: error: issue file is 3 MB; the limit is 2 MB"


def test_an_issue_at_the_size_limit_loads(tmp_path: Path) -> None:
    head = (FRONT + "# S\n\n## Item\n*1 maggio*\n\n").encode()
    path = tmp_path / "limit.md"
    path.write_bytes(head + b"x" * (MAX_ISSUE_BYTES - len(head)))
    assert path.stat().st_size == MAX_ISSUE_BYTES
    assert len(load_issue(path).items[0].body) == MAX_ISSUE_BYTES - len(head)
    path.write_bytes(head + b"x" * (MAX_ISSUE_BYTES - len(head) + 1))
    assert errors_of(path) == [(None, "issue file is 2.000001 MB; the limit is 2 MB")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_stream_whose_size_stat_cannot_tell_is_read_only_past_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    written: list[int] = []

    def feed() -> None:
        with open(fifo, "wb") as out:
            try:
                for _ in range(3):
                    out.write(b"x" * 1_000_000)
                    written.append(1_000_000)
            except BrokenPipeError:
                pass  # the reader stopped at the limit and closed its end

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    assert errors_of(fifo) == [(None, "issue file is 2.000001 MB; the limit is 2 MB")]
    writer.join(10)
    assert not writer.is_alive() and sum(written) < 3_000_000


@pytest.mark.parametrize(
    "old,new,line,key",
    [
        ('subject: "S"', 'subject: "Notizie =?us-ascii?q?=0D=0AReply-To:_attacker@evil.example=0D=0A?="', 5, "subject"),
        ('preheader: "P"', 'preheader: "=?utf-8?B?UmVwbHktVG86IGE=?="', 6, "preheader"),
        ('preheader: "P"', 'preheader: "P"\nedition: "a cura di =?iso-8859-1?q?Citt=E0?="', 7, "edition"),
        ('preheader: "P"', 'preheader: "P"\ndate_line: "=?utf-8?q?Maggio?="', 7, "date_line"),
        ('preheader: "P"', 'preheader: "P"\ncontact:\n  - "Relazioni"\n  - "x =?utf-8?q?y?= z"', 7, "contact"),
    ],
)
def test_rfc2047_encoded_words_in_front_matter_are_refused(tmp_path: Path, old: str, new: str, line: int, key: str) -> None:
    path = tmp_path / "encoded.md"
    path.write_text(FRONT.replace(old, new) + "# S\n", encoding="utf-8")
    assert errors_of(path) == [(line, f"'{key}' holds an RFC 2047 encoded word (=?...?=); write the text itself")]


def test_text_that_only_looks_like_an_encoded_word_start_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.md"
    path.write_text(FRONT.replace('subject: "S"', 'subject: "Quanto fa 2+2 =? Quattro"') + "# S\n", encoding="utf-8")
    assert load_issue(path).subject == "Quanto fa 2+2 =? Quattro"
