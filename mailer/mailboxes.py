"""Where the bounce and unsubscribe mail waits: a Maildir, an mbox file, or an IMAP folder over TLS.

Each source yields (key, raw bytes) and is told when a message has been recorded (`done`), so it can mark
it seen, move it to another folder, or (only when asked) delete it. Nothing is changed before the message
is on record, so a run stopped half-way loses nothing, and intake's digest makes a second reading harmless.
"""
from __future__ import annotations

import imaplib
import mailbox
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from mailer.errors import MailerError


class InboxError(MailerError):
    """The mailbox cannot be opened or read (missing folder, refused login, no TLS...)."""


class MailSource(Protocol):
    label: str  # for the record: where a message was read, without credentials

    def messages(self) -> Iterator[tuple[str, bytes]]: ...

    def done(self, key: str) -> None: ...

    def close(self) -> None: ...


class MaildirSource:
    """A Maildir: messages in new/ and cur/. Done: moved to cur/ and flagged seen (S), or moved into the
    Maildir++ subfolder `move_to` (.NAME), or deleted when `delete` is set."""

    def __init__(self, path: Path, *, move_to: str = "", delete: bool = False) -> None:
        if not all((path / sub).is_dir() for sub in ("new", "cur", "tmp")):
            raise InboxError(f"{path} is not a Maildir (it needs new/, cur/ and tmp/)")
        self.path, self.move_to, self.delete = path, move_to, delete
        self.label = f"maildir:{path}"

    def messages(self) -> Iterator[tuple[str, bytes]]:
        keys = [f"{sub}/{name}" for sub in ("new", "cur") for name in sorted(os.listdir(self.path / sub)) if not name.startswith(".")]
        for key in keys:  # listed first: a message marked done moves into cur/ and must not come round again
            try:
                data = (self.path / key).read_bytes()
            except OSError:
                continue  # taken by another reader meanwhile
            yield key, data

    def done(self, key: str) -> None:
        source = self.path / key
        sub, name = key.split("/", 1)
        if self.delete:
            source.unlink(missing_ok=True)
            return
        base, _, info = name.partition(":2,")
        flags = "".join(sorted(set(info) | {"S"}))
        target_dir = self.path / "cur"
        if self.move_to:
            target_dir = self.path / f".{self.move_to}" / "cur"
            for part in ("new", "cur", "tmp"):
                (target_dir.parent / part).mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{base}:2,{flags}"
        if source != target:
            try:
                os.replace(source, target)
            except FileNotFoundError:
                pass  # another reader moved it meanwhile: it is on record either way

    def close(self) -> None:
        pass


class MboxSource:
    """An mbox file, read and never changed (mbox has no safe way to mark one message)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InboxError(f"{path}: no such mbox file")
        self.box = mailbox.mbox(path, create=False)
        self.label = f"mbox:{path}"

    def messages(self) -> Iterator[tuple[str, bytes]]:
        try:
            keys = list(self.box.keys())
        except (OSError, mailbox.Error) as exc:
            raise InboxError(f"{self.label}: cannot read: {exc}") from None
        for key in keys:
            yield str(key), self.box.get_bytes(key)

    def done(self, key: str) -> None:
        pass

    def close(self) -> None:
        self.box.close()


class ImapSource:
    """An IMAP folder, over TLS only: imaps://USER:PASSWORD@HOST[:993]/FOLDER, or imap://... with STARTTLS
    (refused if the server does not offer it). Query: move=FOLDER (created if missing), delete=true,
    verify=false (no certificate check), cafile=PATH. Done: flagged \\Seen, moved, or deleted."""

    def __init__(self, url: str, *, move_to: str = "", delete: bool = False, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("imaps", "imap") or not parts.hostname:
            raise InboxError("the IMAP address must look like imaps://user:password@host/INBOX")
        try:
            parts.port
        except ValueError:
            raise InboxError(f"the IMAP address has a port that is not a number: {parts.netloc.rpartition('@')[2]}") from None
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.move_to = move_to or query.get("move", "")
        self.delete = delete or query.get("delete", "").lower() in ("1", "true", "yes")
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
        self.label = f"{parts.scheme}://{parts.hostname}:{port}/{self.folder}"
        context = ssl.create_default_context(cafile=query.get("cafile") or None)
        if query.get("verify", "").lower() in ("0", "false", "no"):
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            if parts.scheme == "imaps":
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(parts.hostname, port, ssl_context=context, timeout=timeout)
            else:
                self.imap = imaplib.IMAP4(parts.hostname, port, timeout=timeout)
                if "STARTTLS" not in self.imap.capabilities:
                    raise InboxError(f"{self.label} offers no STARTTLS; the password would travel in clear (use imaps://)")
                self.imap.starttls(context)
            self.imap.login(_quote(unquote(parts.username or "")), unquote(parts.password or ""))  # imaplib quotes the password itself
            self.imap.capability()  # what the server offers once logged in (MOVE, UIDPLUS), not before
            status, detail = self.imap.select(_quote(self.folder))
            if status != "OK":
                raise InboxError(f"{self.label}: cannot open folder {self.folder!r}: {_text(detail)}")
            if self.move_to:
                self.imap.create(_quote(self.move_to))  # NO if it exists: fine
        except InboxError:
            raise
        except (OSError, ssl.SSLError, imaplib.IMAP4.error, ValueError, UnicodeError) as exc:
            raise InboxError(f"{self.label}: {exc}") from None
        self._deleted: list[str] = []

    def messages(self) -> Iterator[tuple[str, bytes]]:
        try:
            status, data = self.imap.uid("SEARCH", "ALL")
            uids = data[0].split() if status == "OK" and data and data[0] else []
            for uid in uids:
                status, parts = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
                body = next((p[1] for p in parts if isinstance(p, tuple) and len(p) == 2), None)
                if status == "OK" and isinstance(body, bytes):
                    yield uid.decode("ascii"), body
        except (OSError, imaplib.IMAP4.error) as exc:
            raise InboxError(f"{self.label}: {exc}") from None

    def done(self, key: str) -> None:
        try:
            if self.move_to:
                if "MOVE" in self.imap.capabilities:
                    self._ok(self.imap.uid("MOVE", key, _quote(self.move_to)), f"move message {key} to {self.move_to!r}")
                    return
                self._ok(self.imap.uid("COPY", key, _quote(self.move_to)), f"copy message {key} to {self.move_to!r}")
            if self.move_to or self.delete:
                self._ok(self.imap.uid("STORE", key, "+FLAGS", "(\\Deleted)"), f"flag message {key} deleted")
                self._deleted.append(key)
            else:
                self._ok(self.imap.uid("STORE", key, "+FLAGS", "(\\Seen)"), f"flag message {key} seen")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise InboxError(f"{self.label}: {exc}") from None

    def _ok(self, answer: tuple[str, list[object]], what: str) -> None:
        status, detail = answer
        if status != "OK":  # e.g. COPY to a folder the server refuses: then nothing may be deleted
            raise InboxError(f"{self.label}: cannot {what}: {_text(detail)}")

    def close(self) -> None:
        try:
            if self._deleted:
                if "UIDPLUS" in self.imap.capabilities:  # only our messages, not others flagged by another client
                    self.imap.uid("EXPUNGE", ",".join(self._deleted))
                else:
                    self.imap.expunge()
            self.imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _quote(folder: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", folder) + '"'


def _text(detail: object) -> str:
    if isinstance(detail, list) and detail and isinstance(detail[0], bytes):
        return detail[0].decode("utf-8", "replace")
    return str(detail)


def open_source(*, maildir: Path | None = None, mbox: Path | None = None, imap: str | None = None,
                move_to: str = "", delete: bool = False) -> MailSource:
    """The one source the command names."""
    chosen = [name for name, value in (("--maildir", maildir), ("--mbox", mbox), ("--imap", imap)) if value]
    if len(chosen) != 1:
        raise InboxError("name one mailbox: --maildir DIR, --mbox FILE or --imap URL")
    if maildir:
        return MaildirSource(maildir, move_to=move_to, delete=delete)
    if mbox:
        if move_to or delete:
            raise InboxError("an mbox file is only read: --move-to and --delete work with --maildir and --imap")
        return MboxSource(mbox)
    assert imap is not None
    return ImapSource(imap, move_to=move_to, delete=delete)
