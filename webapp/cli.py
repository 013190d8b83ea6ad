"""`flask --app webapp ...` commands: admin accounts and tokens, model versions."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from webapp.extensions import db
from webapp.models import ApiToken, Drawing, ModelVersion, User, utcnow
from webapp.storage import get_store

users_cli = AppGroup("users", help="Admin accounts and API tokens.")
models_cli = AppGroup("models", help="Model versions in the registry.")
storage_cli = AppGroup("storage", help="The object store against the database.")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@users_cli.command("create-admin")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_admin(username: str, password: str) -> None:
    """Create an admin (or reset an existing user's password and make them admin)."""
    if len(password) < 8:
        raise click.UsageError("the password must be at least 8 characters")
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username)
        db.session.add(user)
    user.password_hash = generate_password_hash(password)
    user.is_admin = True
    db.session.commit()
    click.echo(f"admin {username} is ready")


@users_cli.command("issue-token")
@click.argument("username")
def issue_token(username: str) -> None:
    """Print a new bearer token for USERNAME's admin API calls (shown once, stored hashed)."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_admin:
        raise click.UsageError(f"no admin called {username}; create one with `users create-admin`")
    token = secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, token_sha256=hash_token(token)))
    db.session.commit()
    click.echo(f"token for {username} (send as 'Authorization: Bearer <token>'):")
    click.echo(token)


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
        existing = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name).limit(1))
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
    """Every version of every network, with its status."""
    for row in db.session.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)):
        accuracy = row.metrics.get("mnist_test_accuracy")
        shown = f"{accuracy:.2%}" if isinstance(accuracy, (int, float)) else "-"
        click.echo(f"{row.name} v{row.version}  {row.status:<9}  MNIST {shown}  parent {row.parent_version or '-'}")


dataset_cli = AppGroup("dataset", help="The confirmed dataset.")


@dataset_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(("npz", "zip")), default="npz", show_default=True,
              help="npz: MNIST-style arrays x, y, holdout, ids; zip: <label>/<id>.png and manifest.csv")
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
    """Remove drawing objects no row points at; report rows whose object is missing (rows are kept)."""
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
