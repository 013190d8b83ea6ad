"""Streamed exports of the confirmed dataset: an MNIST-style .npz and an ImageFolder zip of PNGs."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import Engine, func, select

from webapp.extensions import db
from webapp.models import Drawing, utcnow

log = logging.getLogger(__name__)

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
CHUNK_ROWS = 1000
# Hand bytes on once this much has piled up: big enough for few syscalls, small enough to
# keep the web process flat however large the dataset is.
FLUSH_BYTES = 256 * 1024
ID_DTYPE = np.dtype("<U36")
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ("id", "label", "source", "holdout", "created_at", "confirmed_at", "width", "height", "sha256",
                   "path", "original_sha256", "original_width", "original_height")


@dataclass(frozen=True)
class ExportFormat:
    mimetype: str
    extension: str


FORMATS = {"npz": ExportFormat("application/octet-stream", "npz"), "zip": ExportFormat("application/zip", "zip")}


class ExportError(RuntimeError):
    """The rows changed under an export, or a row cannot be exported; the output is unusable."""


class _Sink:
    """A write-only, unseekable file for zipfile: it keeps what was written until drained.

    Having no tell() makes zipfile write each member's sizes after its data (data descriptors),
    which is what lets an archive be streamed without knowing its layout in advance.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.pending = 0

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        self.pending += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.pending = 0
        return data


class DatasetExport:
    """The confirmed drawings as they stood when this was opened, as a stream of bytes.

    Opening reads one snapshot of the database (REPEATABLE READ on PostgreSQL, a read
    transaction on SQLite) and counts the rows in it, so the .npz header can declare its shape
    before the rows arrive; rows confirmed, relabelled or rejected meanwhile do not show.
    Iterate it once (a Flask response body, or a file via write_to), then it closes itself.
    """

    def __init__(self, fmt: str, *, engine: Engine | None = None, chunk_rows: int | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.format = fmt
        self.opened_at = utcnow()
        self._chunk_rows = chunk_rows or CHUNK_ROWS
        self._connection = _snapshot_connection(engine if engine is not None else db.engine)
        try:
            # COUNT(confirmed_at) counts exactly the rows with confirmed_at <= its MAX; the bound
            # keeps later confirmations out even where a snapshot is not honoured.
            self.rows, self.confirmed_until = self._connection.execute(
                select(func.count(Drawing.confirmed_at), func.max(Drawing.confirmed_at))
                .where(Drawing.status == "confirmed")).one()
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
            yield from (self._npz() if self.format == "npz" else self._image_folder())
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

    def _batches(self, *columns) -> Iterator[list]:
        """The snapshot's confirmed rows in order, ``chunk_rows`` at a time, only ``columns``."""
        if self.rows == 0:
            return
        query = (select(*columns)
                 .where(Drawing.status == "confirmed", Drawing.confirmed_at <= self.confirmed_until)
                 .order_by(Drawing.confirmed_at, Drawing.id)
                 .execution_options(yield_per=self._chunk_rows))
        yield from self._connection.execute(query).partitions()

    def _member(self, name: str, compress: bool) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self.opened_at.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        return info

    def _npz(self) -> Iterator[bytes]:
        sink = _Sink()
        labels, holdout = bytearray(), bytearray()
        # Level 1: a quarter of the size for little CPU; digits are mostly zeros.
        with zipfile.ZipFile(sink, "w", compresslevel=1) as archive:
            with archive.open(self._member("x.npy", True), "w", force_zip64=True) as member:
                member.write(_npy_header(np.uint8, (self.rows, IMAGE_SIZE, IMAGE_SIZE)))
                for batch in self._batches(Drawing.id, Drawing.label, Drawing.holdout, Drawing.pixels):
                    for row in batch:
                        if len(row.pixels) != PIXELS or row.label is None or not 0 <= row.label <= 9:
                            raise ExportError(f"drawing {row.id} has no usable pixels or label")
                        labels.append(row.label)
                        holdout.append(bool(row.holdout))
                    member.write(b"".join(row.pixels for row in batch))
                    if sink.pending >= FLUSH_BYTES:
                        yield sink.drain()
                self._check_count(len(labels))
            for name, array in (("y.npy", np.frombuffer(labels, np.uint8)),
                                ("holdout.npy", np.frombuffer(holdout, np.uint8).astype(bool))):
                with archive.open(self._member(name, True), "w", force_zip64=True) as member:
                    member.write(_npy_header(array.dtype, array.shape))
                    member.write(array.tobytes())
                yield sink.drain()
            # A second pass over the same snapshot, so the ids never sit in memory all at once.
            with archive.open(self._member("ids.npy", True), "w", force_zip64=True) as member:
                member.write(_npy_header(ID_DTYPE, (self.rows,)))
                seen = 0
                for batch in self._batches(Drawing.id):
                    member.write(np.array([row.id for row in batch], dtype=ID_DTYPE).tobytes())
                    seen += len(batch)
                    if sink.pending >= FLUSH_BYTES:
                        yield sink.drain()
                self._check_count(seen)
        yield sink.drain()

    def _image_folder(self) -> Iterator[bytes]:
        sink = _Sink()
        seen = 0
        # The manifest comes last (a zip writes one member at a time); it waits in a spooled
        # file, which stays in memory while small and moves to disk when the dataset is big.
        with (tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+", newline="", encoding="utf-8") as manifest,
              zipfile.ZipFile(sink, "w") as archive):
            writer = csv.writer(manifest)
            writer.writerow(MANIFEST_FIELDS)
            columns = (Drawing.id, Drawing.label, Drawing.source, Drawing.holdout, Drawing.created_at,
                       Drawing.confirmed_at, Drawing.sha256, Drawing.width, Drawing.height, Drawing.pixels)
            for batch in self._batches(*columns):
                for row in batch:
                    if len(row.pixels) != PIXELS or row.label is None or not 0 <= row.label <= 9:
                        raise ExportError(f"drawing {row.id} has no usable pixels or label")
                    png = pixels_png(row.pixels)
                    path = f"{row.label}/{row.id}.png"
                    archive.writestr(self._member(path, False), png)
                    writer.writerow((row.id, row.label, row.source, int(bool(row.holdout)), _iso(row.created_at),
                                     _iso(row.confirmed_at), IMAGE_SIZE, IMAGE_SIZE,
                                     hashlib.sha256(png).hexdigest(), path, row.sha256, row.width, row.height))
                seen += len(batch)
                if sink.pending >= FLUSH_BYTES:
                    yield sink.drain()
            self._check_count(seen)
            manifest.seek(0)
            with archive.open(self._member(MANIFEST, True), "w") as member:
                while text := manifest.read(FLUSH_BYTES):
                    member.write(text.encode("utf-8"))
                    yield sink.drain()
        yield sink.drain()

    def _check_count(self, seen: int) -> None:
        if seen != self.rows:
            raise ExportError(f"the export declared {self.rows} drawings but read {seen}; the snapshot did not hold")


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


def pixels_png(pixels: bytes) -> bytes:
    """A 28x28 grayscale PNG of stored pixels, unchanged: white digit on black, as MNIST."""
    buffer = io.BytesIO()
    Image.frombytes("L", (IMAGE_SIZE, IMAGE_SIZE), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they were stored as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()
