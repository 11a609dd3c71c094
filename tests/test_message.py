"""Per-recipient message: headers, MIME structure and spliced bodies, checked by parsing with the stdlib."""
from __future__ import annotations

import email
import re
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest

from mailer.compose import compose
from mailer.issue import load_issue
from mailer.message import MessageBuilder, Recipient
from mailer.settings import Settings
from subscribers.tokens import TokenSigner
from tests.conftest import ISSUE_2026


@pytest.fixture
def built(settings: Settings) -> tuple[MessageBuilder, object]:
    issue = load_issue(ISSUE_2026)
    composed = compose(issue, settings.newsletter(issue.newsletter), settings.base_url)
    return MessageBuilder(composed, TokenSigner(settings.secret_keys), base_url=settings.base_url, campaign_id=7, list_id=3), composed


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def test_headers_of_a_campaign_message(built: tuple[MessageBuilder, object], settings: Settings) -> None:
    builder, _ = built
    out = builder.build(Recipient("lucia.ferrero@example.org", "Lucia Ferrèro", subscriber_id=42, delivery_id=1001))
    msg = parse(out.data)
    assert msg["Subject"] == "Work in Progress – maggio 2026"
    assert b"Subject: =?utf-8?" in out.data or b"=?utf-8?b?4oCT?=" in out.data  # encoded word for the en dash
    assert msg["To"].addresses[0].display_name == "Lucia Ferrèro"
    assert msg["To"].addresses[0].addr_spec == "lucia.ferrero@example.org"
    assert msg["From"].addresses[0].addr_spec == "international.affairs@comune.torino.it"
    assert msg["From"].addresses[0].display_name == "Città di Torino – Relazioni Internazionali"  # decoded, as mail clients show it
    assert msg["Reply-To"] == "international.affairs@comune.torino.it"
    assert msg["Message-ID"] == "<work-in-progress.2026-05.c7.d1001@comune.torino.it>"
    assert msg["MIME-Version"] == "1.0" and msg["Date"].datetime is not None
    assert msg["List-Id"] == "Work in Progress <work-in-progress.relint.comune.torino.it>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [part.strip().strip("<>") for part in msg["List-Unsubscribe"].split(",")]
    assert https == builder.unsubscribe_url(Recipient("lucia.ferrero@example.org", subscriber_id=42))
    assert https.startswith(settings.base_url + "/u/") and mailto.startswith("mailto:unsubscribe@comune.torino.it?subject=")
    claim = TokenSigner(settings.secret_keys).read_unsubscribe_token(https.rsplit("/", 1)[1])
    assert (claim.subscriber_id, claim.list_id) == (42, 3)
    assert out.envelope_from.startswith("bounces+") and out.envelope_from.endswith("@comune.torino.it")
    tag = out.envelope_from.split("+", 1)[1].split("@")[0]
    assert TokenSigner(settings.secret_keys).read_bounce_tag(tag) == 1001


def test_bodies_are_the_composed_parts_with_the_recipient_spliced_in(built: tuple[MessageBuilder, object]) -> None:
    builder, composed = built
    recipient = Recipient("a&b@example.net", "A <B> & C", subscriber_id=5, delivery_id=9)
    msg = parse(builder.build(recipient).data)
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.iter_parts()
    assert (text_part.get_content_type(), html_part.get_content_type()) == ("text/plain", "text/html")
    url = builder.unsubscribe_url(recipient)
    assert composed.html.count("__MAILER_EMAIL__") == 2 and composed.html.count("__MAILER_UNSUBSCRIBE_URL__") == 1
    preferences = f"{builder.base_url}/p/{builder.signer.manage_token(5, 0, builder.campaign_id)}"
    expected_html = composed.html.replace("__MAILER_EMAIL__", "a&amp;b@example.net").replace(
        "__MAILER_UNSUBSCRIBE_URL__", url
    ).replace("__MAILER_PREFERENCES_URL__", preferences)
    assert html_part.get_content().replace("\r\n", "\n") == expected_html
    expected_text = composed.text.replace("__MAILER_EMAIL__", "a&b@example.net").replace("__MAILER_UNSUBSCRIBE_URL__", url)
    expected_text = expected_text.replace("__MAILER_PREFERENCES_URL__", preferences)
    assert text_part.get_content().replace("\r\n", "\n") == expected_text
    assert "__MAILER_" not in html_part.get_content() + text_part.get_content()


@pytest.mark.parametrize("name", ["N" * 200, ("Zoé Müller-Lo Russo " * 20).strip(), "Niccolò"])
def test_lines_are_short_and_crlf_terminated(built: tuple[MessageBuilder, object], name: str) -> None:
    builder, _ = built
    data = builder.build(Recipient("x" * 40 + "@example.com", name, delivery_id=3)).data
    # decode_header follows RFC 2047 6.2 (space between adjacent encoded words is dropped);
    # the stdlib's newer parser inserts one, so the display name is checked the older way
    to = email.message_from_bytes(data, policy=policy.compat32)["To"]
    decoded = str(make_header(decode_header(to)))
    assert decoded.startswith(name) and decoded.endswith("<" + "x" * 40 + "@example.com>")
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    to_lines = head.split("\r\nTo: ", 1)[1].split("\r\nMessage-ID:", 1)[0].split("\r\n")
    assert all(len(line) <= 78 for line in to_lines[1:]) and len("To: " + to_lines[0]) <= 78
    assert all(len(word) <= 75 for word in re.findall(r"=\?utf-8\?[bq]\?[^?]*\?=", "".join(to_lines)))
    assert b"\n" not in data.replace(b"\r\n", b"")
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert max(len(line) for line in data.split(b"\r\n")) < 998


def test_a_name_cannot_add_headers_or_hide_encoded_words(built: tuple[MessageBuilder, object]) -> None:
    builder, _ = built
    msg = parse(builder.build(Recipient("v@example.org", "Eve\r\nBcc: all@example.com", delivery_id=4)).data)
    assert msg["Bcc"] is None and "Bcc" in msg["To"].addresses[0].display_name
    sneaky = "=?utf-8?b?Q0VPIDxjZW9AYmFuay5leGFtcGxlPg==?="  # would display as 'CEO <ceo@bank.example>'
    msg = parse(builder.build(Recipient("v@example.org", sneaky, delivery_id=5)).data)
    assert "ceo@bank" not in str(msg["To"])


def test_test_messages_get_unique_ids(built: tuple[MessageBuilder, object]) -> None:
    builder, _ = built
    first, second = (builder.build(Recipient("t@example.org")).message_id for _ in range(2))
    assert first != second and ".test." in first


@pytest.mark.parametrize("name", ["Niccolò", ".Punto iniziale"])
def test_no_line_begins_with_a_dot_so_smtp_sends_the_bytes_as_built(built: tuple[MessageBuilder, object], name: str) -> None:
    """The issue's CSS and text put dots at the start of quoted-printable lines; they are written =2E."""
    from mailer.transport import data_bytes
    from mailer.wire import WireReady

    builder, _ = built
    data = builder.build(Recipient(".first@example.com", name, delivery_id=3)).data
    assert isinstance(data, WireReady)
    assert not data.startswith(b".") and b"\n." not in data and data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    assert data_bytes(data) == data + b".\r\n"
    html_part = email.message_from_bytes(data, policy=policy.default).get_body(("html",))
    assert ".mj-outlook-group-fix" in html_part.get_content()  # the =2E decodes back to a dot


def test_quoted_printable_never_begins_a_line_with_a_dot_and_decodes_back() -> None:
    import binascii
    import quopri
    import random

    from mailer.message import _qp

    draw = random.Random(3)
    for _ in range(2000):
        text = "".join(draw.choice([".", "a", "é", " ", "\n", "=", "x."]) for _ in range(draw.randint(1, 400)))
        lines = _qp(text).split(b"\r\n")
        assert not any(line.startswith(b".") for line in lines)
        assert quopri.decodestring(b"\n".join(lines)).decode("utf-8") == text
        if all(len(line) <= 76 for line in binascii.b2a_qp(text.encode(), istext=True).split(b"\n")):
            assert all(len(line) <= 76 for line in lines)  # (the stdlib itself may write 77 before a final =20)


def test_a_recipients_plain_values_take_the_short_way_and_decode_the_same() -> None:
    import quopri

    from mailer.message import _qp, _qp_value

    values = ["anna.rossi@example.org", "https://newsletter.example.org/u/" + "WzEsMiwzXQ.abc-DEF_123" * 6,
              "x" * 75 + ".tail", "=equals@example.org", "Niccolò <n@example.org>", ".leading@example.org", "a" * 76]
    for value in values:
        encoded = _qp_value(value)
        assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode("utf-8") == value
        lines = encoded.split(b"\r\n")
        assert all(len(line) <= 76 and not line.startswith(b".") for line in lines), value
        if "=" in value or "ò" in value:
            assert encoded == _qp(value)  # not plain: the encoder's way
