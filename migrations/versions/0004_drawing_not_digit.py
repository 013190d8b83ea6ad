"""drawings flagged as not a digit; indexes for the dashboard

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 14:15:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('not_digit', sa.Boolean(), server_default=sa.text('false'), nullable=False))
        batch_op.create_index(batch_op.f('ix_drawings_not_digit'), ['not_digit'], unique=False)
        batch_op.create_index('ix_drawings_counts', ['source', 'status', 'label', 'not_digit'], unique=False)
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index('ix_predictions_version', ['model_name', 'model_version', 'drawing_id', 'label'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_predictions_version')
    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.drop_index('ix_drawings_counts')
        batch_op.drop_index(batch_op.f('ix_drawings_not_digit'))
        batch_op.drop_column('not_digit')
