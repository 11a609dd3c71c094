"""Alembic environment: run on the connection mailer.database hands over (no alembic.ini needed)."""
from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import mailer.models  # noqa: F401  (the ledger tables)
import subscribers.models  # noqa: F401  (the store tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
