"""`flask --app webapp label-sets ...`: create, list and close label sets."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp import label_sets
from webapp.audit import record
from webapp.errors import ServiceError
from webapp.extensions import db

label_sets_cli = AppGroup("label-sets", help="Label sets: drawing tasks with their own classes and models.")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


@label_sets_cli.command("create")
@click.argument("slug")
@click.option("--classes", required=True, help="the class names, in order, separated by commas")
@click.option("--name", default=None, help="the set's display name (default: from the slug)")
@click.option("--translation", "translations", multiple=True, metavar="LANG=NAMES",
              help="class names in ja, ru or zh, in the same order, e.g. ja=ねこ,キリン (repeatable)")
def create_set(slug: str, classes: str, name: str | None, translations: tuple[str, ...]) -> None:
    """Create the open label set SLUG; it has no model until its first training run."""
    parsed = {}
    for item in translations:
        language, _, names = item.partition("=")
        parsed[language.strip()] = _split(names)
    try:
        row = label_sets.create(slug=slug, classes=_split(classes), name=name, translations=parsed)
        record("label_set.create", target=row.slug, detail={"classes": row.class_names})
        db.session.commit()
    except ServiceError as exc:
        db.session.rollback()
        raise click.UsageError(exc.message) from None
    click.echo(f"label set {row.slug} ({row.name}): {', '.join(row.class_names)}")


@label_sets_cli.command("list")
def list_sets() -> None:
    """Every label set: slug, state, drawings, networks with a model, classes."""
    for entry in label_sets.listing():
        state = "closed" if entry["closed"] else "open"
        models = ",".join(name for name, has in entry["models"].items() if has) or "no model"
        classes = ",".join(item["name"] for item in entry["classes"])
        click.echo(f"{entry['slug']}  {state}  {sum(entry['drawings'].values())} drawings  {models}  {classes}")


@label_sets_cli.command("close")
@click.argument("slug")
def close_set(slug: str) -> None:
    """Close SLUG to new contributions (its models keep answering)."""
    row = label_sets.find(slug)
    if row is None:
        raise click.UsageError(f"no label set named {slug}")
    try:
        label_sets.close(row)
    except ServiceError as exc:
        raise click.UsageError(exc.message) from None
    record("label_set.close", target=row.slug)
    db.session.commit()
    click.echo(f"label set {row.slug} is closed to new contributions")
