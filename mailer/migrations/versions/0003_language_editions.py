"""language editions: the edition each delivery gets, and each campaign's editions as sent

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaign_edition',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('issue_path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('issue_source', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'language')
    )
    with op.batch_alter_table('campaign_edition', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_edition_campaign_id'), ['campaign_id'], unique=False)
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sqlmodel.sql.sqltypes.AutoString(), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_column('language')
    with op.batch_alter_table('campaign_edition', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaign_edition_campaign_id'))
    op.drop_table('campaign_edition')
