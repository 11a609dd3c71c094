"""Shared fixtures: real SQLite files in a temporary folder, settings from the real config, sample issues."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from mailer.capture import CaptureServer, capture_in_thread
from mailer.database import open_database
from mailer.settings import PROJECT_ROOT, Settings, load_settings
from subscribers import store

EXAMPLES = PROJECT_ROOT / "examples"
ISSUE_2026 = EXAMPLES / "2026-05-work-in-progress.md"
ISSUE_2021 = EXAMPLES / "2021-05-work-in-progress.md"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'mailer.sqlite'}"})


@pytest.fixture
def engine(settings: Settings) -> Engine:
    engine = open_database(settings.database_url)
    yield engine
    engine.dispose()


def add_people(engine: Engine, emails: list[str], list_name: str = "work-in-progress") -> None:
    with Session(engine) as session:
        mailing_list = store.get_or_create_list(session, list_name)
        people = [store.NewSubscriber(store.normalise_address(e), f"Nome {n}", "it") for n, e in enumerate(emails)]
        store.add_subscribers(session, mailing_list, people, source="test")
        session.commit()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"MAILER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite'}", "COLUMNS": "120"}


@pytest.fixture
def relay() -> Iterator[CaptureServer]:
    """A capture relay in its own thread (it answers 550 to ghost* addresses), for commands run as subprocesses."""
    with capture_in_thread(rule=lambda r: "550 5.1.1 User unknown" if r.startswith("ghost") else None) as server:
        yield server
