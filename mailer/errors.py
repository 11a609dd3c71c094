"""The errors a user can meet. The CLI prints them as one line each, never a traceback."""
from __future__ import annotations

from dataclasses import dataclass


class MailerError(Exception):
    """Root of the mailer's user-facing errors."""


class SettingsError(MailerError):
    """The settings file or environment holds something unusable."""


@dataclass(frozen=True)
class Problem:
    """One finding about an issue file, located by file and line."""

    path: str
    line: int | None
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.severity}: {self.message}"


class IssueError(MailerError):
    """An issue file cannot be used; carries every error found, each with file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ComposeError(MailerError):
    """The template or MJML compiler failed on an issue."""


class CampaignError(MailerError):
    """A send cannot start or continue (unknown list, changed issue, nothing to resume...)."""


class TransportError(MailerError):
    """The SMTP relay cannot be reached or refuses us as a whole (not a per-recipient answer)."""


class DatabaseUnavailable(MailerError):
    """The database URL names a driver that is not installed, or a place we cannot write."""


class NotFound(MailerError):
    """No such campaign, issue or newsletter (a web page answers 404)."""
