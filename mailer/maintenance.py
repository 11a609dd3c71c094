"""Use cases of the database itself: where its schema stands (`mailer db check`) and upgrading it (`mailer db upgrade`).

Every command upgrades a schema that is behind when it opens the database; these two let an operator do it
on purpose (before starting workers on a new version) or only look, without changing anything.
"""
from __future__ import annotations

from mailer.core import Core
from mailer.database import SchemaState, open_database, schema_state


class Maintenance(Core):
    def database_state(self) -> SchemaState:
        """The schema's revision and any drift from the models, read without upgrading anything."""
        engine = open_database(self.settings.database_url, upgrade=False)
        try:
            return schema_state(engine)
        finally:
            engine.dispose()

    def upgrade_database(self) -> tuple[str | None, SchemaState]:
        """Bring the schema to the newest revision; returns the revision it had, and where it stands now."""
        before = self.database_state().revision
        return before, schema_state(self.engine)
