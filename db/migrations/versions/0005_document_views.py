"""document views: a short text per document (job documents: name and summary) and its vector

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('documents') as batch:
        batch.add_column(sa.Column('view_text', sa.Text(), nullable=True))
        batch.add_column(sa.Column('view_embedding', sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column('view_model', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('documents') as batch:
        batch.drop_column('view_model')
        batch.drop_column('view_embedding')
        batch.drop_column('view_text')
