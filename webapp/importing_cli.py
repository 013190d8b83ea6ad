"""`flask --app webapp dataset import`: a dataset file's drawings into the database and the object store."""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask.cli import with_appcontext

from webapp.dataset_links import DEFAULT_LABEL_SET
from webapp.formats import IMPORT_FORMATS


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(IMPORT_FORMATS), required=True,
              help="npz: x (N,28,28) uint8 and y; zip: this product's export; quickdraw-ndjson: strokes, "
                   "one JSON object a line (or a zip of such files); quickdraw-npy: (N,784) uint8 bitmaps of one class")
@click.option("--label-set", "label_set", default=DEFAULT_LABEL_SET, show_default=True, help="the label set's slug")
@click.option("--status", type=click.Choice(("confirmed", "pending")), default="confirmed", show_default=True,
              help="confirmed: ready to train; pending: waits in the review queue")
@click.option("--label", default=None, help="quickdraw-npy only: the file's class (default: its name, cat.npy -> cat)")
@with_appcontext
def import_command(file: Path, fmt: str, label_set: str, status: str, label: str | None) -> None:
    """Import FILE's drawings with source `import`, skipping any whose image is already stored."""
    from webapp.cli import _service
    from webapp.importing import import_dataset

    started = time.perf_counter()
    result = _service(import_dataset, path=file, fmt=fmt, label_set=label_set, status=status, label=label)
    seconds = time.perf_counter() - started
    click.echo(f"{result.imported} drawings imported, {result.duplicates} duplicates skipped, of {result.read} "
               f"in {file.name} ({seconds:.1f} s, {result.read / max(seconds, 1e-9):,.0f} drawings/s)")
