"""a drawing's strokes, kept in the object store next to its image

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('strokes_key', sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.drop_column('strokes_key')
