"""label sets: the built-in digits set, and the set each drawing, prediction, version and run belongs to

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00

"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# Every row made before label sets existed is a digit; the ORM's default is this id too.
DIGITS_ID = 1
TABLES = ('drawings', 'predictions', 'model_versions', 'training_runs')


def upgrade():
    label_sets = op.create_table('label_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('classes', sa.JSON(), nullable=False),
    sa.Column('base', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_sets')),
    sa.UniqueConstraint('slug', name=op.f('uq_label_sets_slug'))
    )
    op.bulk_insert(label_sets, [{
        'id': DIGITS_ID, 'slug': 'digits', 'name': 'Digits', 'base': 'mnist',
        'classes': [{'name': str(digit), 'names': {}} for digit in range(10)],
        'created_at': datetime.now(timezone.utc),
    }])
    if op.get_bind().dialect.name == 'postgresql':
        # The explicit id leaves the sequence behind: the next set would collide with digits.
        op.execute("SELECT setval(pg_get_serial_sequence('label_sets', 'id'), (SELECT max(id) FROM label_sets))")
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('label_set_id', sa.Integer(), server_default=sa.text(str(DIGITS_ID)),
                                          nullable=False))
            batch_op.create_index(batch_op.f(f'ix_{table}_label_set_id'), ['label_set_id'], unique=False)
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_label_set_id_label_sets'), 'label_sets',
                                        ['label_set_id'], ['id'])
    # Version numbers and the one active version are per network within a set.
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_model_versions_name'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_model_versions_label_set_id'),
                                          ['label_set_id', 'name', 'version'])
        batch_op.drop_index('uq_model_versions_one_active', sqlite_where=sa.text("status = 'active'"),
                            postgresql_where=sa.text("status = 'active'"))
        batch_op.create_index('uq_model_versions_one_active', ['label_set_id', 'name'], unique=True,
                              sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))


def downgrade():
    # Only digits can go back to a schema without sets.
    op.execute(f"DELETE FROM predictions WHERE label_set_id != {DIGITS_ID}")
    op.execute(f"DELETE FROM drawings WHERE label_set_id != {DIGITS_ID}")
    op.execute(f"DELETE FROM model_versions WHERE label_set_id != {DIGITS_ID}")
    op.execute(f"DELETE FROM training_runs WHERE label_set_id != {DIGITS_ID}")
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index('uq_model_versions_one_active', sqlite_where=sa.text("status = 'active'"),
                            postgresql_where=sa.text("status = 'active'"))
        batch_op.create_index('uq_model_versions_one_active', ['name'], unique=True,
                              sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.drop_constraint(batch_op.f('uq_model_versions_label_set_id'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_model_versions_name'), ['name', 'version'])
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_label_set_id_label_sets'), type_='foreignkey')
            batch_op.drop_index(batch_op.f(f'ix_{table}_label_set_id'))
            batch_op.drop_column('label_set_id')
    op.drop_table('label_sets')
