"""`flask --app webapp ...` commands: accounts and tokens, model versions, the dataset, the object store."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from webapp import accounts
from webapp.accounts import hash_token  # noqa: F401  (scripts and tests import it from here)
from webapp.extensions import db
from webapp.models import DIGITS_ID, TOKEN_SCOPES, ApiToken, Drawing, LabelSet, ModelVersion, User, utcnow
from webapp.errors import ServiceError
from webapp.storage import get_store

users_cli = AppGroup("users", help="Accounts: admins and reviewers.")
tokens_cli = AppGroup("tokens", help="API tokens: named, scoped, expiring.")
models_cli = AppGroup("models", help="Model versions in the registry.")
storage_cli = AppGroup("storage", help="The object store against the database.")


def _service(call, *args, **kwargs):
    """A service's refusal as a usage error, not a traceback."""
    try:
        return call(*args, **kwargs)
    except ServiceError as exc:
        db.session.rollback()
        raise click.UsageError(exc.message) from None


@users_cli.command("create-admin")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_admin(username: str, password: str) -> None:
    """Create an admin, or reset an existing user's password, make them admin and enable them.

    A reset signs the user out everywhere: whoever knew the old password may hold a session.
    """
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        _service(accounts.create_user, username=username, password=password, role="admin")
    else:
        _service(accounts.set_password, user, password)  # first: a refused password changes nothing
        _service(accounts.set_role, user, "admin")
        _service(accounts.enable_user, user)
    click.echo(f"admin {username} is ready")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(accounts.ASSIGNABLE_ROLES), default="reviewer", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_user(username: str, role: str, password: str) -> None:
    """Create an account: a reviewer (review queue, dataset) or an admin (everything)."""
    _service(accounts.create_user, username=username, password=password, role=role)
    click.echo(f"{role} {username} is ready")


@users_cli.command("reset-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def reset_password(username: str, password: str) -> None:
    """Give USERNAME a new password; every session of theirs ends."""
    _service(accounts.set_password, _service(accounts.find_user, username), password)
    click.echo(f"{username} has a new password and is signed out everywhere")


@users_cli.command("disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Disable USERNAME: every session ends, sign-in and API tokens are refused (`create-admin` re-enables)."""
    _service(accounts.disable_user, _service(accounts.find_user, username))
    click.echo(f"{username} is disabled and signed out everywhere")


@users_cli.command("issue-token")
@click.argument("username")
def issue_token(username: str) -> None:
    """Print a new admin-scope token for USERNAME (shown once, stored hashed); see `tokens create`."""
    user = _service(accounts.find_user, username)
    name = f"{username[:50]}-{secrets.token_hex(4)}"
    _token, secret = _service(accounts.issue_token, user=user, name=name, scopes=["admin"])
    click.echo(f"token {name} for {username} (send as 'Authorization: Bearer <token>'):")
    click.echo(secret)


@tokens_cli.command("create")
@click.argument("name")
@click.option("--user", "username", required=True, help="the account the token acts for")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(TOKEN_SCOPES), required=True,
              help="read, contribute, review or admin (repeat for several)")
@click.option("--expires-days", type=click.IntRange(1, accounts.MAX_TOKEN_DAYS), default=None,
              help="days until it expires (default TOKEN_DEFAULT_DAYS, 90)")
@click.option("--predict-limit", default=None, help="its own prediction limit, e.g. 600/minute")
@click.option("--contribute-limit", default=None, help="its own contribution limit, e.g. 100/minute;5000/day")
def create_token(name: str, username: str, scopes: tuple[str, ...], expires_days: int | None,
                 predict_limit: str | None, contribute_limit: str | None) -> None:
    """Create the token NAME and print its secret (shown once, stored hashed)."""
    token, secret = _service(accounts.issue_token, user=_service(accounts.find_user, username), name=name,
                             scopes=list(scopes), expires_days=expires_days, predict_limit=predict_limit,
                             contribute_limit=contribute_limit)
    click.echo(f"token {name} ({' '.join(token.scope_list)}) for {username}, expires {token.expires_at:%Y-%m-%d}:")
    click.echo(secret)


@tokens_cli.command("list")
def list_tokens() -> None:
    """Every token: id, name, owner, scopes, expiry and whether it still works."""
    now = utcnow()
    for token in db.session.scalars(select(ApiToken).order_by(ApiToken.id)):
        expires = f"{token.expires_at:%Y-%m-%d}" if token.expires_at else "never"
        state = token.problem(now) or "active"
        click.echo(f"{token.id}  {token.name}  {token.user.username}  {','.join(token.scope_list)}  "
                   f"expires {expires}  {state}")


@tokens_cli.command("revoke")
@click.argument("name")
def revoke_token(name: str) -> None:
    """Revoke the token NAME: refused from its next request on."""
    token = db.session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise click.UsageError(f"no token called {name}")
    accounts.revoke_token(token)
    click.echo(f"token {name} is revoked")


def import_version(stored, *, activate: bool) -> ModelVersion:
    """Copy a published model version into the object store and register it."""
    from webapp.runs import next_version, record_version

    return record_version(stored, version=next_version(stored.name), status="active" if activate else "candidate",
                          reason="base model trained on MNIST",
                          samples=int(stored.manifest.get("training", {}).get("samples", 0)))


@models_cli.command("import-base")
@click.option("--path", "path", type=click.Path(path_type=Path), default=None,
              help="folder of trained versions (default: MODELS_PATH, instance/models)")
def import_base(path: Path | None) -> None:
    """Register the base FNN and CNN as version 1 when the registry has none (idempotent)."""
    from training import MODEL_NAMES
    from training.versions import VersionError, load

    root = path or Path(current_app.config["MODELS_PATH"])
    for name in MODEL_NAMES:
        existing = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                                ModelVersion.label_set_id == DIGITS_ID).limit(1))
        if existing is not None:
            click.echo(f"{name}: the registry already has versions; nothing to import")
            continue
        try:
            stored = load(root, name)
        except VersionError as exc:
            raise click.ClickException(f"{exc}; train first with `python -m training.train`") from None
        row = import_version(stored, activate=True)
        accuracy = row.metrics.get("mnist_test_accuracy")
        click.echo(f"{name}: registered v{row.version} (MNIST test accuracy {accuracy:.2%}) as active")


@models_cli.command("list")
def list_models() -> None:
    """Every version of every network, with its status (other label sets' after their slug)."""
    slugs = dict(db.session.execute(select(LabelSet.id, LabelSet.slug)).all())
    for row in db.session.scalars(select(ModelVersion).order_by(ModelVersion.label_set_id, ModelVersion.name,
                                                                ModelVersion.version)):
        accuracy = row.metrics.get("mnist_test_accuracy")
        shown = f"{accuracy:.2%}" if isinstance(accuracy, (int, float)) else "-"
        where = "" if row.label_set_id == DIGITS_ID else f"{slugs.get(row.label_set_id)} "
        click.echo(f"{where}{row.name} v{row.version}  {row.status:<9}  MNIST {shown}  parent {row.parent_version or '-'}")


dataset_cli = AppGroup("dataset", help="The confirmed dataset.")


@dataset_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(("npz", "zip", "quickdraw-ndjson")), default="npz",
              show_default=True, help="npz: MNIST-style arrays x, y, holdout, ids; zip: <label>/<id>.png and "
              "manifest.csv; quickdraw-ndjson: a zip of <word>.ndjson strokes and manifest.json")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="the file to write (replaced atomically)")
def export_dataset(fmt: str, out: Path) -> None:
    """Export the confirmed drawings, as the API's /api/v1/dataset/export does."""
    import time

    from webapp.dataset import DatasetExport

    if not out.parent.is_dir():
        raise click.UsageError(f"{out.parent} is not a folder")
    started = time.perf_counter()
    export = DatasetExport(fmt)
    size = export.write_to(out)
    click.echo(f"{export.rows} confirmed drawings, {size:,} bytes -> {out} ({time.perf_counter() - started:.1f} s)")


@storage_cli.command("reconcile")
@click.option("--older-than", "older_than", type=click.IntRange(min=0), default=3600, show_default=True,
              help="remove only orphans at least this many seconds old (a save writes its object before its row)")
@click.option("--dry-run", is_flag=True, help="report what would be removed, remove nothing")
def reconcile(older_than: int, dry_run: bool) -> None:
    """Remove drawing objects (images, strokes) no row points at; report rows whose object is missing (rows are kept)."""
    from webapp.storage import StorageError

    store = get_store()
    cutoff = utcnow() - timedelta(seconds=older_than)
    # Objects first, then rows: a save in flight has its object listed before its row can be
    # missed, and young orphans are left alone anyway.
    try:
        objects = list(store.list("drawings/"))
    except StorageError as exc:
        raise click.ClickException(f"cannot list the object store: {exc}") from None
    rows = dict(db.session.execute(select(Drawing.object_key, Drawing.id)).all())
    rows.update(db.session.execute(select(Drawing.strokes_key, Drawing.id).where(Drawing.strokes_key.is_not(None))).all())
    listed = {obj.key for obj in objects}
    orphans = [obj for obj in objects if obj.key not in rows]
    old = [obj for obj in orphans if obj.modified <= cutoff]
    removed, failed = 0, 0
    for obj in old:
        if dry_run:
            click.echo(f"would remove {obj.key} ({obj.size:,} bytes, {obj.modified:%Y-%m-%d %H:%M:%S})")
            continue
        try:
            store.delete(obj.key)
            removed += 1
            click.echo(f"removed {obj.key}")
        except StorageError as exc:
            failed += 1
            click.echo(f"could not remove {obj.key}: {exc}", err=True)
    # A row committed after the listing began has an object the listing may not show: ask again.
    missing = sorted((drawing_id, key) for key, drawing_id in rows.items()
                     if key not in listed and not store.exists(key))
    for drawing_id, key in missing:
        click.echo(f"missing object for drawing {drawing_id}: {key}")
    click.echo(f"{len(objects)} objects, {len(rows)} rows: {len(orphans)} orphans "
               f"({'would remove' if dry_run else 'removed'} {len(old) if dry_run else removed}, "
               f"kept {len(orphans) - len(old)} younger than {older_than} s), "
               f"{len(missing)} rows missing their object")
    if failed:
        raise click.ClickException(f"{failed} orphans could not be removed")


@storage_cli.command("prune")
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=None,
              help="drawings per transaction (default PRUNE_BATCH_SIZE, 1,000)")
def prune(batch_size: int | None) -> None:
    """Delete unrated, unflagged predictions older than PREDICTION_RETENTION: rows, then objects."""
    import time

    from webapp.retention import prune_expired

    started = time.perf_counter()
    result = prune_expired(batch_size=batch_size)
    click.echo(f"deleted {result.rows} expired predictions and {result.objects} objects "
               f"older than {current_app.config['PREDICTION_RETENTION']} ({time.perf_counter() - started:.1f} s)")
    if result.stopped:
        raise click.ClickException(f"stopped early ({result.stopped}); {result.orphans} objects without a row "
                                   "are left for `flask storage reconcile`, the rest for the next prune")
