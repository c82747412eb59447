"""chunk flags: why a stored passage reads like an instruction to a model (ingest.screening); such passages are
kept from students and listed for reviewers

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('chunks', sa.Column('flag', sa.String(length=200), nullable=True))
    op.add_column('ingest_runs', sa.Column('flagged', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('chunks') as batch:
        batch.drop_column('flag')
    with op.batch_alter_table('ingest_runs') as batch:
        batch.drop_column('flagged')
