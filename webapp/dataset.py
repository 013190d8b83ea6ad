"""Streamed exports of the confirmed dataset: an MNIST-style .npz and an ImageFolder zip of PNGs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import Engine, func, select

from webapp.extensions import db
from webapp.label_sets import by_id
from webapp.models import DIGITS_ID, AuditEvent, Drawing, utcnow

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
CHUNK_ROWS = 1000
# The size of the blocks handed on: big enough for few syscalls, small enough to keep the web
# process flat however large the dataset is.
FLUSH_BYTES = 256 * 1024
# stream-zip hands on blocks of exactly that size; none smaller than a member's local header.
MIN_BLOCK_BYTES = 64
ID_DTYPE = np.dtype("<U36")
MANIFEST = "manifest.csv"
# Who confirmed, rejected, relabelled or flagged which drawing, in the zip beside the manifest:
# the labels' provenance (account and token events are not the dataset's, and reviewers
# export too). The .npz stays arrays only, as np.load expects.
AUDIT = "audit.jsonl"
# Level 1: a quarter of the size for little CPU; digits are mostly zeros.
COMPRESS_LEVEL = 1
FILE_MODE = stat.S_IFREG | 0o644
MANIFEST_FIELDS = ("id", "label", "source", "holdout", "created_at", "confirmed_at", "width", "height", "sha256",
                   "path", "original_sha256", "original_width", "original_height")


@dataclass(frozen=True)
class ExportFormat:
    mimetype: str
    extension: str


FORMATS = {"npz": ExportFormat("application/octet-stream", "npz"), "zip": ExportFormat("application/zip", "zip"),
           # Quick, Draw!'s simplified strokes, one <word>.ndjson per class, and a manifest.
           "quickdraw-ndjson": ExportFormat("application/zip", "quickdraw.zip")}


class ExportError(RuntimeError):
    """The rows changed under an export, or a row cannot be exported; the output is unusable."""


class DatasetExport:
    """The confirmed drawings as they stood when this was opened, as a stream of bytes.

    Opening reads one snapshot of the database (REPEATABLE READ on PostgreSQL, a read
    transaction on SQLite) and counts the rows in it, so the .npz header can declare its shape
    before the rows arrive; rows confirmed, relabelled or rejected meanwhile do not show.
    Iterate it once (a Flask response body, or a file via write_to), then it closes itself.
    """

    def __init__(self, fmt: str, *, engine: Engine | None = None, chunk_rows: int | None = None,
                 label_set_id: int = DIGITS_ID):
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.format = fmt
        # One label set's drawings: labels are indices into its classes, so sets never mix.
        self.label_set_id = label_set_id
        self.label_set = by_id(label_set_id)
        self.opened_at = utcnow()
        self._chunk_rows = chunk_rows or CHUNK_ROWS
        self._connection = _snapshot_connection(engine if engine is not None else db.engine)
        try:
            # COUNT(confirmed_at) counts exactly the rows with confirmed_at <= its MAX; the bound
            # keeps later confirmations out even where a snapshot is not honoured.
            self.rows, self.confirmed_until = self._connection.execute(
                select(func.count(Drawing.confirmed_at), func.max(Drawing.confirmed_at))
                .where(Drawing.status == "confirmed", Drawing.label_set_id == label_set_id)).one()
        except BaseException:
            self.close()
            raise

    @property
    def mimetype(self) -> str:
        return FORMATS[self.format].mimetype

    @property
    def filename(self) -> str:
        return f"inkling-dataset-{self.opened_at:%Y-%m-%d}.{FORMATS[self.format].extension}"

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from {"npz": self._npz, "zip": self._image_folder, "quickdraw-ndjson": self._quickdraw}[self.format]()
        finally:
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()  # rolls the read-only transaction back, ending the snapshot

    def __enter__(self) -> DatasetExport:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def write_to(self, path: str | os.PathLike) -> int:
        """Write the export to ``path`` atomically (a temporary file, then a rename); return its size."""
        target = Path(path)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part",
                                             delete=False)
        size = 0
        try:
            with handle:
                for chunk in self:
                    handle.write(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(handle.name, 0o644)
            os.replace(handle.name, target)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        finally:
            self.close()
        return size

    def _batches(self, *columns, where=None) -> Iterator[list]:
        """The snapshot's confirmed rows in order (those matching ``where``), ``chunk_rows`` at a time, only ``columns``."""
        if self.rows == 0:
            return
        query = (select(*columns)
                 .where(Drawing.status == "confirmed", Drawing.confirmed_at <= self.confirmed_until,
                        Drawing.label_set_id == self.label_set_id,
                        *(() if where is None else (where,)))
                 .order_by(Drawing.confirmed_at, Drawing.id)
                 .execution_options(yield_per=self._chunk_rows))
        yield from self._connection.execute(query).partitions()

    def _npz(self) -> Iterator[bytes]:
        return zip_archive(self._npz_members(), modified_at=self.opened_at)

    def _npz_members(self) -> Iterator[tuple]:
        from stream_zip import ZIP_64

        # The zip takes one member at a time, and reads a member's chunks to the end before it
        # asks for the next: so y and holdout are complete once x has been written.
        labels, holdout = bytearray(), bytearray()

        def pixels() -> Iterator[bytes]:
            yield _npy_header(np.uint8, (self.rows, IMAGE_SIZE, IMAGE_SIZE))
            for batch in self._batches(Drawing.id, Drawing.label, Drawing.holdout, Drawing.pixels):
                for row in batch:
                    _check_row(row)
                    labels.append(row.label)
                    holdout.append(bool(row.holdout))
                yield b"".join(row.pixels for row in batch)
            self._check_count(len(labels))

        yield "x.npy", ZIP_64, pixels()
        for name, array in (("y.npy", np.frombuffer(labels, np.uint8)),
                            ("holdout.npy", np.frombuffer(holdout, np.uint8).astype(bool))):
            yield name, ZIP_64, (_npy_header(array.dtype, array.shape), array.tobytes())
        yield "ids.npy", ZIP_64, self._ids()

    def _ids(self) -> Iterator[bytes]:
        # A second pass over the same snapshot, so the ids never sit in memory all at once.
        yield _npy_header(ID_DTYPE, (self.rows,))
        seen = 0
        for batch in self._batches(Drawing.id):
            yield np.array([row.id for row in batch], dtype=ID_DTYPE).tobytes()
            seen += len(batch)
        self._check_count(seen)

    def _quickdraw(self) -> Iterator[bytes]:
        from webapp.quickdraw_export import quickdraw_members

        return zip_archive(quickdraw_members(self._connection, self._batches, until=self.confirmed_until,
                                                     label_set=self.label_set),
                           modified_at=self.opened_at)

    def _image_folder(self) -> Iterator[bytes]:
        # The manifest comes last (a zip writes one member at a time); it waits in a spooled
        # file, which stays in memory while small and moves to disk when the dataset is big.
        with tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+", newline="", encoding="utf-8") as manifest:
            yield from zip_archive(self._image_members(manifest), modified_at=self.opened_at)

    def _image_members(self, manifest) -> Iterator[tuple]:
        from stream_zip import NO_COMPRESSION_64, ZIP_64

        writer = csv.writer(manifest)
        writer.writerow(MANIFEST_FIELDS)
        columns = (Drawing.id, Drawing.label, Drawing.source, Drawing.holdout, Drawing.created_at,
                   Drawing.confirmed_at, Drawing.sha256, Drawing.width, Drawing.height, Drawing.pixels)
        seen = 0
        for batch in self._batches(*columns):
            for row in batch:
                _check_row(row)
                png = pixels_png(row.pixels)
                path = f"{row.label}/{row.id}.png"
                yield path, NO_COMPRESSION_64, (png,)  # PNGs are deflated already
                writer.writerow((row.id, row.label, row.source, int(bool(row.holdout)), _iso(row.created_at),
                                 _iso(row.confirmed_at), IMAGE_SIZE, IMAGE_SIZE,
                                 hashlib.sha256(png).hexdigest(), path, row.sha256, row.width, row.height))
            seen += len(batch)
        self._check_count(seen)
        manifest.seek(0)
        yield MANIFEST, ZIP_64, (text.encode("utf-8") for text in iter(lambda: manifest.read(FLUSH_BYTES), ""))
        yield AUDIT, ZIP_64, self._audit_lines()

    def _audit_lines(self) -> Iterator[bytes]:
        """The snapshot's drawing events, oldest first, one JSON object a line."""
        query = (select(AuditEvent.created_at, AuditEvent.actor, AuditEvent.action, AuditEvent.target,
                        AuditEvent.detail)
                 .where(AuditEvent.action.like("drawing.%"), AuditEvent.created_at <= self.opened_at)
                 .order_by(AuditEvent.created_at, AuditEvent.id).execution_options(yield_per=self._chunk_rows))
        for batch in self._connection.execute(query).partitions():
            yield "".join(json.dumps({"at": _iso(row.created_at), "actor": row.actor, "action": row.action,
                                      "drawing": row.target, "detail": row.detail or {}}) + "\n"
                          for row in batch).encode("utf-8")

    def _check_count(self, seen: int) -> None:
        if seen != self.rows:
            raise ExportError(f"the export declared {self.rows} drawings but read {seen}; the snapshot did not hold")


def zip_archive(members: Iterable[tuple], *, modified_at: datetime) -> Iterator[bytes]:
    """A ZIP64 archive of ``(name, method, chunks)`` members, written front to back.

    stream-zip keeps one small directory record per member until the end, so 50,000 PNGs
    cost a few MB (README: make bench-export); deflated members carry a data descriptor,
    stored ones (ready-made PNGs) their sizes up front. Imported only when an export runs:
    stream-zip brings PyCryptodome and cffi (~3 MB) into every web worker otherwise.
    """
    from stream_zip import stream_zip

    return stream_zip(((name, modified_at, FILE_MODE, method, chunks) for name, method, chunks in members),
                      chunk_size=max(FLUSH_BYTES, MIN_BLOCK_BYTES), extended_timestamps=False,
                      get_compressobj=lambda: zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS))


def _snapshot_connection(engine: Engine):
    """A connection whose reads all see the database as it was at the first one."""
    connection = engine.connect()
    if connection.dialect.name == "sqlite":
        # pysqlite opens transactions only before writes; without an explicit BEGIN each
        # SELECT would see a different moment. In WAL mode this read blocks no writer.
        connection.exec_driver_sql("BEGIN")
    else:
        connection.execution_options(isolation_level="REPEATABLE READ")
    return connection


def _npy_header(dtype, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _check_row(row) -> None:
    if len(row.pixels) != PIXELS or row.label is None or not 0 <= row.label <= 9:
        raise ExportError(f"drawing {row.id} has no usable pixels or label")


def pixels_png(pixels: bytes) -> bytes:
    """A 28x28 8-bit grayscale PNG of stored pixels, unchanged: white digit on black, as MNIST."""
    buffer = io.BytesIO()
    Image.frombytes("L", (IMAGE_SIZE, IMAGE_SIZE), pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()
