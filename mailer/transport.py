"""SMTP over aiosmtplib: reusable connections, TLS, AUTH, per-connection message limits.

A reply to one message is returned as data (SmtpReply); only a relay we cannot reach or log in to at all
raises TransportError.
"""
from __future__ import annotations

import asyncio
import re
import ssl

import aiosmtplib

from mailer.errors import TransportError
from mailer.replies import DATA, DONE, END, MAIL, RCPT, SmtpReply  # noqa: F401  (re-exported)
from mailer.settings import SmtpTarget
from mailer.wire import WireReady


DATA_TIMEOUT = 600.0  # RFC 5321 4.5.3.2.6: wait up to 10 minutes for the reply to the end of the message
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def data_bytes(message: bytes) -> bytes:
    """The message as it travels after DATA: CRLF line endings, leading dots doubled (RFC 5321 4.5.2), and
    the final dot. What aiosmtplib's own data() sends; here, so that the transport knows when the final dot
    has left (mailer.replies.END) and a lost line before it is known not to have delivered anything.

    Our messages are built that way (mailer.wire.WireReady) and go as they are; anything else is rewritten
    as aiosmtplib would."""
    if not isinstance(message, WireReady):
        message = _LEADING_DOT.sub(b"..", _LINE_ENDINGS.sub(b"\r\n", message))
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


_TLS_CONTEXTS: dict[bool, ssl.SSLContext] = {}


def tls_context(validate: bool) -> ssl.SSLContext:
    """One client TLS context per process (loading the CA store costs milliseconds; every connection shares it)."""
    if validate not in _TLS_CONTEXTS:
        context = ssl.create_default_context()
        if not validate:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _TLS_CONTEXTS[validate] = context
    return _TLS_CONTEXTS[validate]


class _EndOfData(Exception):
    """The line was lost after the message's final dot was written: the server may have kept the message."""


class _RefusedAtEnd(aiosmtplib.SMTPResponseException):
    """The server's refusal of the message, in its reply to the final dot."""


class SmtpConnection:
    """One SMTP session, opened on first use and reopened after `max_messages` or a lost connection."""

    def __init__(
        self, target: SmtpTarget, *, timeout: float = 30, max_messages: int = 500, connect_retries: int = 3,
        data_timeout: float = DATA_TIMEOUT,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.max_messages = max_messages
        self.connect_retries = connect_retries
        self._smtp: aiosmtplib.SMTP | None = None
        self._sent_on_connection = 0
        self._transactions_on_connection = 0  # answered transactions, accepted or not

    async def _connect(self) -> aiosmtplib.SMTP:
        t = self.target
        may_use_tls = t.implicit_tls or t.starttls is not False
        last: Exception | None = None
        for attempt in range(self.connect_retries):
            smtp = aiosmtplib.SMTP(
                hostname=t.host,
                port=t.port,
                use_tls=t.implicit_tls,
                start_tls=None if t.implicit_tls else t.starttls,  # None: upgrade whenever the server offers STARTTLS
                tls_context=tls_context(t.validate_certs) if may_use_tls else None,  # a plain session builds none
                timeout=self.timeout,
            )
            try:
                await smtp.connect()
                if t.username:
                    if smtp.get_transport_info("sslcontext") is None and t.starttls is not False:
                        smtp.close()
                        raise TransportError(
                            f"SMTP relay {t} offers no STARTTLS: the password would travel in clear. Use smtps://, "
                            "or add ?starttls=false if this relay is on a network you trust"
                        )
                    await smtp.login(t.username, t.password or "")
                return smtp
            except aiosmtplib.SMTPAuthenticationError as exc:
                smtp.close()
                raise TransportError(f"SMTP login to {t} refused: {exc.code} {exc.message}") from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                smtp.close()
                last = exc
                await asyncio.sleep(0.2 * 2**attempt)
        raise TransportError(f"cannot connect to SMTP relay {t}: {last}")

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> SmtpReply:
        """One transaction: MAIL, RCPT, DATA. Returns the final reply, or the reply (or lost line) of the
        step that failed, with that step named: a line lost during DATA may have delivered the message.

        A reused connection that the server has meanwhile closed (idle timeout, or 421 at MAIL because of
        a per-connection limit) is reopened and the message tried once more on the fresh one."""
        reused = self._smtp is not None and self._transactions_on_connection > 0
        reply = await self._transaction(envelope_from, recipient, data)
        if reused and reply.stage == MAIL and (reply.code is None or reply.code == 421):
            await self.close()
            reply = await self._transaction(envelope_from, recipient, data)
        return reply

    async def _transaction(self, envelope_from: str, recipient: str, data: bytes) -> SmtpReply:
        if self._smtp is None or not self._smtp.is_connected or self._sent_on_connection >= self.max_messages:
            await self.close()
            self._smtp = await self._connect()
            self._sent_on_connection = self._transactions_on_connection = 0
        smtp = self._smtp
        stage = MAIL
        try:
            await smtp.mail(envelope_from)
            stage = RCPT
            await smtp.rcpt(recipient)
            stage = DATA
            response = await self._data(smtp, data)
        except aiosmtplib.SMTPResponseException as exc:  # refused sender, recipient or message
            self._transactions_on_connection += 1
            if exc.code == 421 or not smtp.is_connected:  # 421: the server is closing this session
                self._abort()
            else:
                await self._reset()
            return SmtpReply(exc.code, exc.message, END if isinstance(exc, _RefusedAtEnd) else stage)
        except _EndOfData as lost:
            self._abort()
            return SmtpReply(None, f"connection lost after the end of the message: {lost.__cause__}", END)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError) as exc:
            self._abort()  # no QUIT: a stalled server would cost a second timeout
            return SmtpReply(None, f"connection lost: {exc}", stage)
        self._sent_on_connection += 1
        self._transactions_on_connection += 1
        return SmtpReply(response.code, response.message, DONE)

    async def _data(self, smtp: aiosmtplib.SMTP, message: bytes) -> aiosmtplib.SMTPResponse:
        """DATA, then the message. aiosmtplib's data() does both in one call; the two steps are taken apart
        here (its public execute_command, then its protocol's write and read_response) so that a line lost
        before the final dot left is told from one lost after it: only the latter can have delivered."""
        start = await smtp.execute_command(b"DATA")
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost before the message was sent")
        protocol.write(data_bytes(message))  # raises SMTPServerDisconnected if the line is already gone
        try:
            response = await protocol.read_response(timeout=max(self.timeout, self.data_timeout))
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError, OSError) as exc:
            raise _EndOfData() from exc
        if response.code != 250:
            raise _RefusedAtEnd(response.code, response.message)
        return response

    async def _reset(self) -> None:
        """RSET after a refused command so the session can carry the next message."""
        if self._smtp is None:
            return
        try:
            await self._smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self.close()

    def _abort(self) -> None:
        """Drop the connection without QUIT (it is lost, stalled, or the server said 421)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _drop(smtp)

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            _drop(smtp)


def _drop(smtp: aiosmtplib.SMTP) -> None:
    """Close the socket now, not once a stalled peer has read what is still buffered for it."""
    if smtp.transport is not None:
        smtp.transport.abort()
    smtp.close()
