"""What every use case needs: settings, the database, the token signer and the SMTP senders.

Built once from Settings by the composition root (mailer.app.Mailer); the use-case mixins
(mailer.sending, mailer.people, mailer.recipients, mailer.archive, mailer.operators) build on it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mailer.errors import IssueError, NotFound, SettingsError
from mailer.reader import Reader, open_sqlite_reader
from mailer.settings import NewsletterSettings, RelaySettings, Settings
from subscribers.tokens import TokenSigner

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from mailer.dkim import DkimKey, DkimSigner
    from mailer.models import Campaign
    from mailer.issue import Issue
    from mailer.transport import SmtpConnection


class Core:
    def __init__(self, settings: Settings, *, engine: "Engine | None" = None) -> None:
        self.settings = settings
        self.signer = TokenSigner(settings.secret_keys)
        self._engine = engine
        self._owns_engine = engine is None
        self._dkim_key: "DkimKey | None" = None
        self.archive_cache: dict[tuple[str, str, str], str] = {}  # (newsletter, issue, digest) -> composed page
        self._composed_campaigns: dict[tuple[int | None, str], Any] = {}  # (campaign, digest) -> its editions, composed

    @property
    def engine(self) -> "Engine":
        """The database, opened (and migrated) on first use: commands that need none never touch it."""
        if self._engine is None:
            from mailer.database import open_database

            self._engine = open_database(self.settings.database_url, busy_timeout=self.settings.database_busy_timeout)
        return self._engine

    def close(self) -> None:
        if self._engine is not None and self._owns_engine:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def session(self) -> Iterator["Session"]:
        """One unit of work: committed when the block ends normally, rolled back otherwise."""
        from sqlmodel import Session

        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reading(self) -> Iterator[Reader]:
        """A DB-API connection for the report queries. Until something else opens the engine, a current SQLite
        database is read through the sqlite3 module alone (SQLAlchemy takes longer to import than a report
        takes to run); otherwise the engine lends one of its connections."""
        reader = open_sqlite_reader(self.settings.database_url) if self._engine is None else None
        if reader is None:
            connection = self.engine.raw_connection()
            reader = Reader(connection, sqlite=self.engine.dialect.name == "sqlite")
        try:
            yield reader
        finally:
            reader.close()

    def campaign(self, campaign_id: int) -> "Campaign":
        from mailer.models import Campaign

        with self.session() as session:
            found = session.get(Campaign, campaign_id)
        if found is None:
            raise NotFound(f"no campaign {campaign_id}")
        return found

    def senders(self, count: int | None = None, *, relay: "RelaySettings | None" = None) -> list["SmtpConnection"]:
        """Connections to a relay (the main one unless named): its configured number, or `count`."""
        from mailer.transport import SmtpConnection

        s = self.settings
        relay = relay or s.relays[0]
        return [
            SmtpConnection(relay.target, timeout=s.smtp_timeout, max_messages=relay.messages_per_connection, data_timeout=s.smtp_data_timeout)
            for _ in range(count or relay.connections)
        ]

    def dkim_signer(self, newsletter: NewsletterSettings) -> "DkimSigner | None":
        """The signer for a newsletter's messages, when a DKIM key is configured (read once per process)."""
        if not self.settings.dkim_key_file:
            return None
        from mailer.dkim import DkimSigner, load_key

        if self._dkim_key is None:
            s = self.settings
            self._dkim_key = load_key(s.dkim_key_file, s.dkim_selector, s.dkim_domain)
        return DkimSigner(self._dkim_key, newsletter.from_address.rpartition("@")[2])

    def list_title(self, name: str, title: str = "") -> str:
        """What recipients call a list: its own title, else the title of the newsletter configured for it."""
        if title and title != name:
            return title
        return next((nl.title for nl in self.settings.newsletters.values() if nl.list == name), title or name)

    def newsletter_for(self, issue: Issue) -> NewsletterSettings:
        """The configured newsletter an issue names; an unknown one is reported at its front matter line."""
        try:
            return self.settings.newsletter(issue.newsletter)
        except SettingsError as exc:
            raise IssueError([issue.problem("newsletter", str(exc))]) from None
