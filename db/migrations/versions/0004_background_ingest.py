"""background ingest: ingest_runs keep the parameters and progress of a queued upload

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ingest_runs') as batch:
        batch.add_column(sa.Column('params', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('done', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('chunks_reused', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ingest_runs') as batch:
        batch.drop_column('heartbeat_at')
        batch.drop_column('chunks_reused')
        batch.drop_column('done')
        batch.drop_column('params')
