"""web app: subscriber events, consent text, notices, operators

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 22:19:48.325971
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('admin_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('last_login_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_user_username'), ['username'], unique=True)

    op.create_table('notice',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('smtp_code', sa.Integer(), nullable=True),
    sa.Column('smtp_reply', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_notice_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_notice_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_notice_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('subscriber_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=True),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['mailing_list.id'], ),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('subscriber_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriber_event_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscriber_event_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_subscriber_event_subscriber_id'), ['subscriber_id'], unique=False)

    # Unsubscribes already on record become events of kind 'unsubscribed', ids kept.
    op.execute(
        "INSERT INTO subscriber_event (id, subscriber_id, list_id, campaign_id, kind, method, detail, created_at) "
        "SELECT id, subscriber_id, list_id, campaign_id, 'unsubscribed', method, '', created_at FROM unsubscribe_event"
    )
    with op.batch_alter_table('unsubscribe_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unsubscribe_event_campaign_id'))
        batch_op.drop_index(batch_op.f('ix_unsubscribe_event_subscriber_id'))

    op.drop_table('unsubscribe_event')
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consent_text', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sending_seconds', sa.Float(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_column('sending_seconds')
    with op.batch_alter_table('subscriber', schema=None) as batch_op:
        batch_op.drop_column('consent_text')

    op.create_table('unsubscribe_event',
    sa.Column('id', sa.INTEGER(), nullable=False),
    sa.Column('subscriber_id', sa.INTEGER(), nullable=False),
    sa.Column('list_id', sa.INTEGER(), nullable=True),
    sa.Column('campaign_id', sa.INTEGER(), nullable=True),
    sa.Column('method', sa.VARCHAR(), nullable=False),
    sa.Column('created_at', sa.DATETIME(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['mailing_list.id'], ),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('unsubscribe_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unsubscribe_event_subscriber_id'), ['subscriber_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_unsubscribe_event_campaign_id'), ['campaign_id'], unique=False)

    op.execute(
        "INSERT INTO unsubscribe_event (id, subscriber_id, list_id, campaign_id, method, created_at) "
        "SELECT id, subscriber_id, list_id, campaign_id, method, created_at FROM subscriber_event WHERE kind = 'unsubscribed'"
    )
    with op.batch_alter_table('subscriber_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriber_event_subscriber_id'))
        batch_op.drop_index(batch_op.f('ix_subscriber_event_kind'))
        batch_op.drop_index(batch_op.f('ix_subscriber_event_campaign_id'))

    op.drop_table('subscriber_event')
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notice_subscriber_id'))
        batch_op.drop_index(batch_op.f('ix_notice_kind'))
        batch_op.drop_index(batch_op.f('ix_notice_email'))
        batch_op.drop_index(batch_op.f('ix_notice_created_at'))

    op.drop_table('notice')
    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_user_username'))

    op.drop_table('admin_user')
