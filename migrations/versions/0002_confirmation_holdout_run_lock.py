"""confirmation, holdout and training run lock

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 12:20:08.964246

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('holdout', sa.Boolean(), server_default=sa.text('(false)'), nullable=False))
        batch_op.add_column(sa.Column('status_reason', sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f('ix_drawings_confirmed_at'), ['confirmed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_drawings_holdout'), ['holdout'], unique=False)

    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data_until', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lock', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_training_runs_lock'), ['lock'])



def downgrade():
    with op.batch_alter_table('training_runs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_training_runs_lock'), type_='unique')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('lock')

    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('data_until')

    with op.batch_alter_table('drawings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drawings_holdout'))
        batch_op.drop_index(batch_op.f('ix_drawings_confirmed_at'))
        batch_op.drop_column('status_reason')
        batch_op.drop_column('holdout')
        batch_op.drop_column('confirmed_at')

