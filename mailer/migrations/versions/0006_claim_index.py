"""claim index: pending deliveries of a campaign in id order, so a claim never sorts the whole queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 03:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

PENDING = "status IN ('queued', 'deferred')"


def upgrade() -> None:
    op.create_index(
        "ix_delivery_due", "delivery", ["campaign_id", "id"], unique=False,
        sqlite_where=sa.text(PENDING), postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_due", table_name="delivery")
