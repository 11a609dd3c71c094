"""Use cases of the subscriber store as operators meet them: import, add, remove, list, export."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mailer.core import Core
from mailer.settings import LANGUAGES
from mailer.errors import MailerError
from subscribers import store
from subscribers.csvio import stream_subscribers_csv, write_subscribers_csv
from subscribers.errors import CsvImportError, StoreError
from subscribers.models import EventKind, SubscriberEvent

STATUSES = ("active", "pending", "unsubscribed", "bounced", "complained")


@dataclass(frozen=True)
class ImportResult:
    rows: int
    merged: int
    counts: store.ImportCounts


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise StoreError(f"language {language!r} is not offered (offered: {', '.join(LANGUAGES)})")
    return language


def check_status(status: str | None) -> str | None:
    if status is not None and status not in STATUSES:
        raise StoreError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return status


class People(Core):
    def import_subscribers(self, csv_path: Path, list_name: str, language: str = "it") -> ImportResult:
        """All or nothing: a bad row stops the import before anything is written."""
        rows = stream_subscribers_csv(csv_path, default_language=check_language(language), languages=LANGUAGES)
        with self.session() as session:
            staged = store.stage_import(session, rows)  # read as it goes, into a temporary table
            if staged.problems:  # nothing written: the session rolls back
                more = [(0, f"... and {staged.more_problems} more") ] if staged.more_problems else []
                raise CsvImportError(str(csv_path), staged.problems + more)
            mailing_list = store.get_or_create_list(session, list_name, language=language)
            counts = store.merge_staged(session, mailing_list, source=f"import:{csv_path.name}", default_language=language)
        return ImportResult(staged.rows, staged.merged, counts)

    def add_subscriber(self, email: str, list_name: str, *, name: str = "", language: str | None = None) -> tuple[str, bool]:
        """An operator's action: puts someone on a list (back on it, if they had left). A language given
        changes theirs; none keeps it (or takes the list's, for someone new). Returns the address as stored
        and whether they were added."""
        address = store.normalise_address(email)
        with self.session() as session:
            mailing_list = store.get_or_create_list(session, list_name, language=check_language(language or "it"))
            person = store.NewSubscriber(address, store.clean_name(name), check_language(language) if language else "")
            counts = store.add_subscribers(session, mailing_list, [person], source="admin", resubscribe=True)
            if counts.added:
                sub = store.find_subscriber(session, address)
                assert sub.id is not None
                session.add(SubscriberEvent(subscriber_id=sub.id, list_id=mailing_list.id, kind=EventKind.SUBSCRIBED, method="admin"))
        return address, bool(counts.added)

    def remove_subscriber(self, email: str, list_name: str | None = None) -> tuple[str, int]:
        """Unsubscribe (an operator's action, on record). Someone not on that list is an error.
        Returns the address as stored and how many subscriptions ended."""
        with self.session() as session:
            subscriber = store.find_subscriber(session, email)
            mailing_list = store.get_list(session, list_name) if list_name else None
            ended = store.unsubscribe(session, subscriber, mailing_list, method="admin")
            if not ended:
                where = f"list '{list_name}'" if list_name else "any list"
                raise StoreError(f"{subscriber.email} is not subscribed to {where}")
            return subscriber.email, ended

    def unsuppress_subscriber(self, email: str) -> tuple[str, str]:
        """An operator's decision that a bounced or complained address may get mail again (on record).
        Returns the address and the status lifted."""
        with self.session() as session:
            subscriber = store.find_subscriber(session, email)
            previous = store.unsuppress(session, subscriber)
            assert subscriber.id is not None
            session.add(SubscriberEvent(subscriber_id=subscriber.id, kind=EventKind.UNSUPPRESSED, method="admin", detail=f"was {previous}"))
            return subscriber.email, previous

    def list_subscribers(self, out: TextIO, list_name: str | None = None, status: str | None = None) -> int:
        """Write subscribers as CSV (of one list, or everyone); returns how many."""
        check_status(status)
        with self.session() as session:
            mailing_list = store.get_list(session, list_name) if list_name else None
            return write_subscribers_csv(store.list_members(session, mailing_list, status), out)

    def export_subscribers(self, out_path: Path, list_name: str, status: str | None = None) -> int:
        """A CSV file that `import` reads back, with each person's status on that list."""
        check_status(status)
        with self.session() as session:
            store.get_list(session, list_name)  # an unknown list fails before the file is created
        try:
            with out_path.open("w", encoding="utf-8", newline="") as handle:
                return self.list_subscribers(handle, list_name, status)
        except OSError as exc:
            raise MailerError(f"cannot write {out_path}: {exc.strerror or exc}") from None
