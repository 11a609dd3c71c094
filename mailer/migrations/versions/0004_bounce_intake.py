"""bounce intake: messages that came back to the bounce and unsubscribe addresses, bounce details, bounce scores

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 00:49:16.129938
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbound_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('needs_review', sa.Boolean(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_message_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_message_needs_review'), ['needs_review'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_message_received_at'), ['received_at'], unique=False)

    with op.batch_alter_table('bounce_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('category', sqlmodel.sql.sqltypes.AutoString(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('reporting_mta', sqlmodel.sql.sqltypes.AutoString(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('inbound_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_bounce_event_inbound_id'), ['inbound_id'], unique=False)
        batch_op.create_foreign_key("fk_bounce_event_inbound_id", 'inbound_message', ['inbound_id'], ['id'])

    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bounce_score', sa.Float(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('bounce_day', sa.Date(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.drop_column('bounce_day')
        batch_op.drop_column('bounce_score')

    with op.batch_alter_table('bounce_event', schema=None) as batch_op:
        batch_op.drop_constraint("fk_bounce_event_inbound_id", type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_bounce_event_inbound_id'))
        batch_op.drop_column('inbound_id')
        batch_op.drop_column('reporting_mta')
        batch_op.drop_column('recipient')
        batch_op.drop_column('category')
        batch_op.drop_column('status')

    with op.batch_alter_table('inbound_message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_message_received_at'))
        batch_op.drop_index(batch_op.f('ix_inbound_message_needs_review'))
        batch_op.drop_index(batch_op.f('ix_inbound_message_kind'))

    op.drop_table('inbound_message')
