"""A local capture SMTP server (aiosmtpd) that keeps every message in a Maildir instead of delivering it.

Used by the demo, by `mailer capture-server` for previews on a developer's machine, and by the tests.
Optional rules answer chosen recipients the way real servers do (550 unknown user, 451 try later, or a
dropped connection), so bounces and deferrals can be seen end to end.
"""
from __future__ import annotations

import asyncio
import mailbox
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

DROP = "drop"  # a rule answer meaning: close the connection without a reply
Rule = Callable[[str], str | None]  # recipient -> SMTP reply line, DROP, or None to accept


def demo_rule(recipient: str) -> str | None:
    """The demo's pretend-world: some sample addresses bounce or are greylisted, like real lists."""
    local = recipient.partition("@")[0]
    if local.startswith("bounce"):
        return "550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table" % recipient
    if local.startswith("full"):
        return "552 5.2.2 <%s>: Mailbox full" % recipient
    if local.startswith("greylist"):
        return "451 4.7.1 <%s>: Recipient address rejected: Greylisted, try again later" % recipient
    return None


@dataclass
class Received:
    envelope_from: str
    recipients: list[str]
    data: bytes


@dataclass
class CaptureHandler:
    maildir: Path | None = None
    rule: Rule | None = None  # answers RCPT TO
    sender_rule: Rule | None = None  # answers MAIL FROM
    data_rule: Rule | None = None  # answers the end of DATA, given the first recipient; DROP stores, then hangs up
    messages: list[Received] = field(default_factory=list)
    keep_in_memory: bool = True
    _box: mailbox.Maildir | None = None

    def __post_init__(self) -> None:
        if self.maildir is not None:
            self.maildir.parent.mkdir(parents=True, exist_ok=True)
            self._box = mailbox.Maildir(str(self.maildir), create=True)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        answer = self.sender_rule(address) if self.sender_rule else None
        if answer:
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        answer = self.rule(address) if self.rule else None
        if answer == DROP:
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 closing connection"  # not seen by the client: the line is already gone
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        answer = self.data_rule(envelope.rcpt_tos[0]) if self.data_rule and envelope.rcpt_tos else None
        if answer and answer != DROP:
            return answer
        if self._box is not None:  # as a delivery agent files it: the envelope sender on top
            self._box.add(f"Return-Path: <{envelope.mail_from}>\r\n".encode("utf-8", "replace") + data)
        received = Received(str(envelope.mail_from), list(envelope.rcpt_tos), data)
        if self.keep_in_memory:
            self.messages.append(received)
        if answer == DROP:  # accepted, but the line goes before the reply: the sender cannot know
            assert server.transport is not None
            server.transport.close()
        queue_id = len(self.messages)
        return f"250 2.0.0 Ok: queued as C{queue_id:06d}"


class CaptureServer:
    """`async with CaptureServer(...) as server:` listens on 127.0.0.1:server.port (port 0 = any free port)."""

    def __init__(
        self,
        *,
        maildir: Path | None = None,
        rule: Rule | None = None,
        sender_rule: Rule | None = None,
        data_rule: Rule | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        keep_in_memory: bool = True,
    ) -> None:
        self.handler = CaptureHandler(
            maildir=maildir, rule=rule, sender_rule=sender_rule, data_rule=data_rule, keep_in_memory=keep_in_memory
        )
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def __aenter__(self) -> "CaptureServer":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.handler, hostname="capture.localhost", data_size_limit=None, enable_SMTPUTF8=True),
            host=self.host,
            port=self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextmanager
def capture_in_thread(**options: Any) -> Iterator[CaptureServer]:
    """A CaptureServer running in its own thread's event loop, for callers that block (a subprocess of the
    CLI, a browser driven synchronously, a benchmark): `with capture_in_thread(rule=...) as server: ...`."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        async with CaptureServer(**options) as server:
            state["server"], state["loop"], state["stop"] = server, asyncio.get_running_loop(), asyncio.Event()
            started.set()
            await state["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True, name="capture-smtp")
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the capture SMTP server did not start")
    try:
        yield state["server"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)
