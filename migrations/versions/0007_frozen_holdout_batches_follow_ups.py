"""frozen holdout, per-run batches, follow-up runs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('batched_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_drawings_batched_at'), ['batched_at'], unique=False)
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('follow_up', sa.Boolean(), server_default=sa.text('false'), nullable=False))
    # Confirmed drawings keep the holdout flag they have; those an existing version trained on
    # (confirmed by its data_until) count as batched, so they are replayed, not new again.
    op.execute("UPDATE drawings SET first_confirmed_at = confirmed_at WHERE confirmed_at IS NOT NULL")
    op.execute("UPDATE drawings SET batched_at = confirmed_at WHERE status = 'confirmed' AND NOT holdout "
               "AND confirmed_at <= (SELECT max(data_until) FROM model_versions)")


def downgrade():
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.drop_column('follow_up')
    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drawings_batched_at'))
        batch_op.drop_column('batched_at')
        batch_op.drop_column('first_confirmed_at')
