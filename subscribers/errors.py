"""Errors of the subscriber store, each a one-line message a user can act on."""
from __future__ import annotations


class StoreError(Exception):
    """Root of the subscriber store's user-facing errors."""


class InvalidAddress(StoreError):
    """An e-mail address that email-validator refuses."""


class UnknownList(StoreError):
    """A list name that does not exist."""


class UnknownSubscriber(StoreError):
    """An address that is not in the store."""


class InvalidToken(StoreError):
    """A signed token that is malformed, tampered with, expired or revoked."""


class CsvImportError(StoreError):
    """A CSV file with bad rows; nothing was imported. Each problem names its line."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}:{line}: {message}" for line, message in problems]
        super().__init__("\n".join(lines + [f"{len(problems)} bad row(s) in {path}; nothing was imported"]))
