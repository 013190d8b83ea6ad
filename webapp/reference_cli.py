"""`flask --app webapp reference ...`: the promotion gate's fixed reference set of diverse writing."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from webapp.storage import get_store

reference_cli = AppGroup("reference", help="The promotion gate's fixed reference set of diverse writing.")


@reference_cli.command("build")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the file here instead of storing it (build where the fonts are, upload elsewhere)")
def build_reference(out: Path | None) -> None:
    """Render the reference set (needs MNIST and the writers' fonts) and store it, or write it to --out."""
    from training.mnist import load_mnist
    from training.reference import build, generator_version, reference_key, to_bytes
    from training.writers import FontsMissing

    mnist = load_mnist()
    try:
        data = to_bytes(build(x_test=mnist.x_test, y_test=mnist.y_test))
    except FontsMissing as exc:
        raise click.ClickException(f"{exc}; build it where the fonts are and `flask reference upload` it") from None
    if out is not None:
        out.write_bytes(data)
        click.echo(f"reference set, {len(data):,} bytes -> {out}")
        return
    key = reference_key(generator_version())
    get_store().put(key, data, content_type="application/octet-stream")
    click.echo(f"reference set, {len(data):,} bytes -> {key} in the object store")


@reference_cli.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def upload_reference(file: Path) -> None:
    """Store a reference set built elsewhere (`flask reference build --out FILE`), after checking it."""
    from training.reference import from_bytes, generator_version, reference_key

    data = file.read_bytes()
    try:
        reference = from_bytes(data)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if reference["version"] != generator_version():  # workers would only read it while no current one exists
        raise click.ClickException(f"built by other code ({reference['version'] or 'unversioned'}, this is "
                                   f"{generator_version()}): build it from the code this deployment runs")
    key = reference_key(reference["version"])
    get_store().put(key, data, content_type="application/octet-stream")
    click.echo(f"reference set of {len(reference['y']):,} drawings -> {key} in the object store")
