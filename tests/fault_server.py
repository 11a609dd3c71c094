"""A real SMTP server (aiosmtpd) for the scale and fault tests: it keeps no message, only who was accepted
and every reply it gave; with a fault rate it answers at random as troubled relays do.

Faults, each drawn per transaction from a seeded generator: 421 (and hang up), 451 or 452 or 550 to RCPT,
554 after DATA, the line dropped before DATA (at RCPT) or after the final dot (the message kept, no reply),
and a stall past the client's timeout before DATA. It advertises PIPELINING, so the client's pipelined
transactions (mailer.smtp_session) meet every fault.
"""
from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

FAULTS = ("421", "451", "452", "550", "554-data", "drop-rcpt", "drop-data", "stall")
REPLIES = {
    "421": "421 4.7.0 Too many connections, closing",
    "451": "451 4.3.0 Temporary local problem, try again",
    "452": "452 4.2.2 Insufficient system storage",
    "550": "550 5.1.1 User unknown",
    "554-data": "554 5.7.1 Message rejected as spam",
}


@dataclass
class FaultHandler:
    fault_rate: float = 0.0
    stall_seconds: float = 2.0
    seed: int = 1
    stall_for: frozenset[str] = frozenset()  # these recipients always stall at RCPT
    pipelining: bool = True  # advertise PIPELINING (RFC 2920) as real relays do: MAIL, RCPT and DATA come in one write
    accepted: Counter[str] = field(default_factory=Counter)  # recipient -> times the message was kept
    replies: dict[str, list[int | None]] = field(default_factory=lambda: defaultdict(list))  # recipient -> codes given
    faults: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    _random: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def _draw(self) -> str | None:
        with self._lock:
            self.transactions += 1
            if self._random.random() >= self.fault_rate:
                return None
            fault = self._random.choice(FAULTS)
            self.faults[fault] += 1
            return fault

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:] if self.pipelining else responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        fault = "stall" if address in self.stall_for else self._draw()
        envelope.fault = fault  # type: ignore[attr-defined]
        if fault == "stall":
            await asyncio.sleep(self.stall_seconds)  # the client gives up first
        if fault in ("drop-rcpt", "stall"):
            self.replies[address].append(None)
            _hang_up(server)
            return "421 4.4.2 closing"  # never seen: the line is gone
        if fault in ("421", "451", "452", "550"):
            self.replies[address].append(int(fault))
            if fault == "421":
                _hang_up_after_reply(server)
            return REPLIES[fault]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipient = envelope.rcpt_tos[0]
        fault = getattr(envelope, "fault", None)
        if fault == "554-data":
            self.replies[recipient].append(554)
            return REPLIES[fault]
        with self._lock:
            self.accepted[recipient] += 1
        if fault == "drop-data":  # kept, but the line goes before the reply: the client cannot know
            self.replies[recipient].append(None)
            _hang_up(server)
            return "250 2.0.0 kept"
        self.replies[recipient].append(250)
        return "250 2.0.0 Ok: queued"


def _hang_up(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


def _hang_up_after_reply(server: SMTP) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, _hang_up, server)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return SMTP(self.handler, hostname="faults.test", ident="fault-server", data_size_limit=None)


@contextmanager
def fault_server(**options: Any) -> Iterator[tuple[FaultHandler, int]]:
    """The server on 127.0.0.1, in a thread of its own; yields (its handler, its port)."""
    handler = FaultHandler(**options)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = _Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
