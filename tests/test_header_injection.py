"""No header we write holds a raw CR or LF from any input: plain, RFC 2047 encoded-word and folded attacks."""
from __future__ import annotations

from dataclasses import replace
from email import message_from_bytes, policy

import pytest

from mailer.compose import compose
from mailer.issue import load_issue
from mailer.message import HeaderInjection, MessageBuilder, Recipient, _header
from mailer.settings import Settings
from subscribers.tokens import TokenSigner
from tests.conftest import ISSUE_2026

ATTACKS = [
    "Notizie =?us-ascii?q?=0D=0AReply-To:_attacker@evil.example=0D=0AContent-Type:_text/plain=0D=0A=0D=0APhishing_body?=",
    "Notizie\r\nReply-To: attacker@evil.example",
    "Notizie\nBcc: attacker@evil.example",
    "Notizie\r\n Reply-To: folded@evil.example\r\nX-Evil: 1",
    "=?utf-8?b?DQpYLUV2aWw6IDE=?=",  # base64 encoded word carrying CRLF X-Evil: 1
    "Notizie =?utf-8?q?=E2=80=93=0AX-Evil:_1?= fine",
]


def headers_of(data: bytes) -> list[tuple[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0]
    parsed = message_from_bytes(head + b"\r\n\r\n", policy=policy.default)
    return [(k.lower(), str(v)) for k, v in parsed.items()]


def build(settings: Settings, *, subject: str = "", name: str = "", nl_changes: dict[str, str] | None = None) -> bytes:
    issue = load_issue(ISSUE_2026)
    if subject:
        issue = replace(issue, subject=subject)
    newsletter = replace(settings.newsletter(issue.newsletter), **(nl_changes or {}))
    composed = compose(issue, newsletter, settings.base_url)
    builder = MessageBuilder(composed, TokenSigner(settings.secret_keys), base_url=settings.base_url)
    return builder.build(Recipient("anna@example.org", name, 7, 0, 1)).data


def assert_one_of_each(data: bytes) -> None:
    names = [k for k, _ in headers_of(data)]
    for header in ("from", "to", "subject", "reply-to", "content-type", "list-id", "list-unsubscribe", "date", "message-id"):
        assert names.count(header) == 1, (header, names)
    assert "x-evil" not in names and "bcc" not in names
    assert b"Phishing body" not in data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\n\r\nPhishing" not in data


@pytest.mark.parametrize("attack", ATTACKS)
def test_subject_attacks_stay_in_the_subject(settings: Settings, attack: str) -> None:
    data = build(settings, subject=attack)
    assert_one_of_each(data)
    subject = dict(headers_of(data))["subject"]
    assert "\r" not in subject and "\n" not in subject and subject.startswith(("Notizie", "= ?", "="))


@pytest.mark.parametrize("attack", ATTACKS)
def test_recipient_name_attacks_stay_in_the_to_header(settings: Settings, attack: str) -> None:
    data = build(settings, name=attack)
    assert_one_of_each(data)
    assert dict(headers_of(data))["to"].endswith("<anna@example.org>")


@pytest.mark.parametrize("field", ["from_name", "title"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_configured_names_cannot_add_headers(settings: Settings, field: str, attack: str) -> None:
    assert_one_of_each(build(settings, nl_changes={field: attack}))


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_header_the_builder_writes_is_one_header(attack: str) -> None:
    for name in ("Subject", "Reply-To", "List-Id", "X-Anything"):
        try:
            folded = _header(name, attack)
        except (HeaderInjection, ValueError):
            continue  # refusing is fine; writing a second header is not
        body = folded.removesuffix(b"\r\n").replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        assert b"\r" not in body and b"\n" not in body, folded
