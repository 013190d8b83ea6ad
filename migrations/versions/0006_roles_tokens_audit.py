"""roles instead of is_admin; named, scoped, expiring, revocable tokens with their own limits; the audit log

Tokens issued before this revision become admin tokens (what they could do) named
"token-<id>", expiring one year after the upgrade: long enough for every script that uses
one to be moved to a new token, and listed with that date on the admin tokens page.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09 10:00:00

"""
from datetime import datetime, timedelta, timezone

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

LEGACY_TOKEN_DAYS = 365


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=16), server_default=sa.text("'none'"),
                                      nullable=False))
    op.execute("UPDATE users SET role = CASE WHEN is_admin THEN 'admin' ELSE 'none' END")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('is_admin')

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('scopes', sa.String(length=64), server_default=sa.text("'read'"),
                                      nullable=False))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('predict_limit', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('contribute_limit', sa.String(length=64), nullable=True))
    tokens = sa.table('api_tokens', sa.column('id', sa.Integer), sa.column('name', sa.String),
                      sa.column('scopes', sa.String), sa.column('expires_at', sa.DateTime(timezone=True)))
    connection = op.get_bind()
    expires = datetime.now(timezone.utc) + timedelta(days=LEGACY_TOKEN_DAYS)
    for (token_id,) in connection.execute(sa.select(tokens.c.id)).all():
        connection.execute(tokens.update().where(tokens.c.id == token_id)
                           .values(name=f"token-{token_id}", scopes='admin', expires_at=expires))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_api_tokens_name'), ['name'])

    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=96), nullable=False),
    sa.Column('target', sa.String(length=128), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_actor'), ['actor'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_created_at'), ['created_at'], unique=False)


def downgrade():
    op.drop_table('audit_events')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_api_tokens_name'), type_='unique')
        batch_op.drop_column('contribute_limit')
        batch_op.drop_column('predict_limit')
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('scopes')
        batch_op.drop_column('name')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_admin', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE users SET is_admin = (role = 'admin')")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('is_admin', existing_type=sa.Boolean(), server_default=None)
        batch_op.drop_column('role')
