"""Composed issue + recipient -> message bytes, by splicing into parts encoded once per issue.

The HTML and text parts are quoted-printable encoded once, cut at the slot markers. Per recipient only the
slot values are encoded and joined in, each between QP soft line breaks ('=' CRLF), which decode to
nothing, so line lengths stay legal whatever the value's length. No email.message object per recipient.
"""
from __future__ import annotations

import binascii
import html
import re
import secrets
import time
from dataclasses import dataclass
from email.header import Header
from email.policy import SMTP
from email.headerregistry import Address
from email.utils import formataddr, formatdate
from typing import TYPE_CHECKING
from urllib.parse import quote

from mailer.wire import WireReady
from mailer.slots import EMAIL_SLOT, PREFERENCES_SLOT, SLOTS, UNSUBSCRIBE_SLOT
from mailer.errors import ComposeError
from subscribers.tokens import TokenSigner

if TYPE_CHECKING:
    from mailer.compose import Composed
    from mailer.dkim import DkimSigner

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
_SLOT_SPLIT = re.compile("(" + "|".join(map(re.escape, SLOTS)) + ")")


@dataclass(frozen=True)
class Recipient:
    """Who one message is for; delivery_id 0 means a test message outside any campaign."""

    email: str
    name: str = ""
    subscriber_id: int = 0
    token_version: int = 0
    delivery_id: int = 0


@dataclass(frozen=True)
class Outgoing:
    envelope_from: str
    recipient: str
    data: bytes
    message_id: str


_QP_UNIT = re.compile(rb"=[0-9A-F]{2}|.", re.S)  # what a quoted-printable line may be cut between


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF endings, and a dot that would begin a line written =2E: no line of our
    messages starts with a dot, so SMTP's dot-stuffing has nothing to do (mailer.transport.data_bytes)."""
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True).replace(b"\r\n", b"\n")
    if encoded.startswith(b".") or b"\n." in encoded:
        encoded = b"\n".join(_dot_escaped(line) if line.startswith(b".") else line for line in encoded.split(b"\n"))
    return encoded.replace(b"\n", CRLF)


def _dot_escaped(line: bytes) -> bytes:
    """A quoted-printable line starting with '.' as '=2E...', cut again (soft breaks) to stay within 76."""
    soft = line.endswith(b"=")
    units = _QP_UNIT.findall(line[:-1] if soft else line)
    lines, current = [], b""
    for unit in units:
        if len(current) + len(unit) > 75:  # room for the soft break's '='
            lines.append(current + b"=")
            current = b""
        current += b"=2E" if not current and unit == b"." else unit  # no line may begin with a dot
    lines.append(current + (b"=" if soft else b""))
    return b"\n".join(lines)


class _SplicedPart:
    """One body part, QP-encoded once, with the positions of its slots."""

    def __init__(self, content: str, escape: bool) -> None:
        pieces = _SLOT_SPLIT.split(content)
        self.segments = [_qp(p) for p in pieces[0::2]]
        self.slots = pieces[1::2]
        self.escape = escape

    def render(self, values: dict[str, str]) -> list[bytes]:
        """The part's bytes as chunks: the first (the text before the first slot) never changes."""
        return self.render_encoded(encode_values(values, self.escape))

    def render_encoded(self, encoded: dict[str, bytes]) -> list[bytes]:
        """render, with the values already encoded for this part (encode_values, once per message)."""
        out = [self.segments[0]]
        for slot, segment in zip(self.slots, self.segments[1:]):
            out += (SOFT_BREAK, encoded[slot], SOFT_BREAK, segment)
        return out


def encode_values(values: dict[str, str], escape: bool) -> dict[str, bytes]:
    """Each slot value in quoted-printable, HTML-escaped first for the HTML part."""
    return {slot: _qp_value(html.escape(value) if escape and _HTML_SPECIAL.search(value) else value) for slot, value in values.items()}


_HTML_SPECIAL = re.compile(r"[&<>\"']")


_PLAIN_VALUE = re.compile(r"[!-<>-~]+")  # printable ASCII but '=': quoted-printable leaves it as it is


def _qp_value(value: str) -> bytes:
    """A recipient's value (an address, a link) in quoted-printable. Addresses and our links are plain
    ASCII: cut into lines of 75 with soft breaks, which is what the encoder would write, without it;
    anything else goes through _qp."""
    if not _PLAIN_VALUE.fullmatch(value):
        return _qp(value)
    raw = value.encode("ascii")
    if len(raw) <= 76 and not raw.startswith(b"."):
        return raw
    chunks = [raw[i : i + 75] for i in range(0, len(raw), 75)]
    if any(chunk.startswith(b".") for chunk in chunks):
        return _qp(value)
    return SOFT_BREAK.join(chunks)


class HeaderInjection(ComposeError):
    """A header value would have put a line break of its own on the wire."""


def _header(name: str, value: str) -> bytes:
    """One header, RFC 2047-encoded and folded as the stdlib's SMTP policy does (used once per issue).

    The policy decodes encoded words it finds in the value, and its fold writes a decoded CR/LF raw:
    '=?us-ascii?q?=0D=0AReply-To:...?=' would become a second header. So the value is put on one line
    and any '=?' defused before parsing, and the folded result is checked to be one header."""
    folded = SMTP.fold(*SMTP.header_store_parse(name, _one_line(value))).encode("ascii")
    return _single_header(name, folded)


def _single_header(name: str, folded: bytes) -> bytes:
    """`folded` unchanged if it is one header: its only bare line break is the last, the others are folds."""
    inner = folded.removesuffix(CRLF).replace(CRLF + b" ", b" ").replace(CRLF + b"\t", b" ")
    if not folded.endswith(CRLF) or b"\r" in inner or b"\n" in inner:
        raise HeaderInjection(f"the {name} header would hold a line break; refusing to build the message")
    return folded


def _one_line(value: str) -> str:
    """Collapse whitespace (a name with CR/LF must not add headers) and defuse '=?', which mail
    clients would decode as an RFC 2047 encoded word hidden in the name."""
    return " ".join(value.split()).replace("=?", "= ?")


def _to_header(name: str, email: str) -> bytes:
    value = formataddr((name, email), "utf-8")
    if len(value) <= 74:  # fits one line: the common case, kept cheap
        return b"To: " + value.encode("ascii") + CRLF
    # A long name: encoded words split at character boundaries, each line within 78 octets.
    encoded = Header(name, "utf-8", header_name="To", maxlinelen=76).encode(linesep="\r\n")  # words <= 75 (RFC 2047)
    return _single_header("To", f"To: {encoded}\r\n <{email}>\r\n".encode("ascii"))


class MessageBuilder:
    """Builds each recipient's message of one campaign; everything recipient-independent is done here, once."""

    def __init__(
        self,
        composed: Composed,
        signer: TokenSigner,
        *,
        base_url: str,
        campaign_id: int = 0,
        list_id: int = 0,
        dkim: DkimSigner | None = None,
    ) -> None:
        nl = composed.newsletter
        self.dkim = dkim
        self.signer = signer
        self.base_url = base_url
        self.campaign_id = campaign_id
        self.list_id = list_id
        self.bounce_local, _, self.bounce_domain = nl.bounce_address.partition("@")
        self.id_domain = nl.from_address.partition("@")[2] or "localhost"
        self.id_prefix = f"{nl.id}.{composed.issue.issue}.c{campaign_id}"
        self.mailto = nl.unsubscribe_mailto
        self._date: tuple[int, bytes] = (-1, b"")
        boundary = "=_wip_" + secrets.token_hex(12)  # '=_' cannot occur in quoted-printable text
        self.head = b"".join(
            [
                _header("From", str(Address(display_name=_one_line(nl.from_name), addr_spec=nl.from_address))),  # the policy encodes the name
                _header("Reply-To", nl.reply_to),
                _header("Subject", composed.subject),
                b"MIME-Version: 1.0\r\n",
                _header("List-Id", f"{nl.title} <{nl.list_id}>"),
                b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                _header("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
            ]
        )
        part = "\r\n--" + boundary + "\r\nContent-Type: text/{}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        self.text_head = ("This is a multi-part message in MIME format." + part.format("plain")).encode("ascii")
        self.html_head = part.format("html").encode("ascii")
        self.tail = ("\r\n--" + boundary + "--\r\n").encode("ascii")
        self.text = _SplicedPart(composed.text, escape=False)
        self.html = _SplicedPart(composed.html, escape=True)
        if dkim is not None:  # the body hash begins once: up to the text part's first slot
            from mailer.dkim import body_hash_start

            self.body_hash = body_hash_start()
            self.body_hash.update(self.text_head + self.text.segments[0])

    def unsubscribe_url(self, r: Recipient) -> str:
        return f"{self.base_url}/u/{self._token(r)}"

    def _token(self, r: Recipient) -> str:
        return self.signer.unsubscribe_token(r.subscriber_id, self.list_id, r.token_version, self.campaign_id)

    def build(self, r: Recipient) -> Outgoing:
        token = self._token(r)
        url = f"{self.base_url}/u/{token}"
        name = _one_line(r.name)
        preferences = f"{self.base_url}/p/{self.signer.manage_token(r.subscriber_id, r.token_version, self.campaign_id)}"
        values = {EMAIL_SLOT: r.email, UNSUBSCRIBE_SLOT: url, PREFERENCES_SLOT: preferences}
        message_id = (
            f"<{self.id_prefix}.d{r.delivery_id}@{self.id_domain}>"
            if r.delivery_id
            else f"<{self.id_prefix}.test.{secrets.token_hex(8)}@{self.id_domain}>"
        )
        own = b"".join(  # this recipient's headers; self.head follows with the issue's
            [
                self._date_header(),
                _to_header(name, r.email),
                b"Message-ID: ", message_id.encode("ascii"), CRLF,
                b"List-Unsubscribe: <", url.encode("ascii"), b">,\r\n <mailto:",
                self.mailto.encode("ascii"), b"?subject=unsubscribe%20", quote(token).encode("ascii"), b">\r\n",
            ]
        )
        body = [
            self.text_head, *self.text.render_encoded(encode_values(values, False)),
            self.html_head, *self.html.render_encoded(encode_values(values, True)), self.tail,
        ]
        signature = self._signature(own, body) if self.dkim else b""
        data = WireReady(b"".join([signature, own, self.head, CRLF, *body]))  # _qp and _header keep it so
        tag = self.signer.bounce_tag(r.delivery_id)
        return Outgoing(f"{self.bounce_local}+{tag}@{self.bounce_domain}", r.email, data, message_id)

    def _date_header(self) -> bytes:
        """The Date header, formatted once per second rather than once per message."""
        second = int(time.time())
        if second != self._date[0]:
            self._date = (second, b"Date: " + formatdate(second, localtime=True).encode("ascii") + CRLF)
        return self._date[1]

    def _signature(self, headers: bytes, body: list[bytes]) -> bytes:
        """The DKIM-Signature header: the body hash finished from where the issue's left it (body[2:] are
        the chunks after the text part's first slot), then the headers signed (this recipient's, then the
        issue's shared self.head)."""
        assert self.dkim is not None
        digest = self.body_hash.copy()
        for chunk in body[2:]:
            digest.update(chunk)
        return self.dkim.header(headers, digest.digest(), below=self.head)


@dataclass(frozen=True)
class EditionBuilders:
    """The builders of a campaign's language editions: each delivery names the edition it gets."""

    by_language: dict[str, MessageBuilder]
    fallback: str  # the edition of deliveries that name none (enqueued before editions) or an unknown one

    def build(self, r: Recipient, language: str = "") -> Outgoing:
        return (self.by_language.get(language) or self.by_language[self.fallback]).build(r)

    @property
    def signs(self) -> bool:
        """Whether the messages get a DKIM signature."""
        return any(b.dkim is not None for b in self.by_language.values())

