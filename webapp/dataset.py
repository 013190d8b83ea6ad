"""Streamed exports of the confirmed dataset: an MNIST-style .npz and an ImageFolder zip of PNGs."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select

from webapp.extensions import db
from webapp.models import Drawing, utcnow

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
CHUNK_ROWS = 1000
# Hand bytes on once this much has piled up: big enough for few syscalls, small enough to
# keep the web process flat however large the dataset is.
FLUSH_BYTES = 256 * 1024
ID_DTYPE = np.dtype("<U36")
MANIFEST = "manifest.csv"
# Level 1: a quarter of the size for little CPU; digits are mostly zeros.
COMPRESS_LEVEL = 1
FLAGS = 0x08  # sizes and CRC follow the data (a data descriptor)
MANIFEST_FIELDS = ("id", "label", "source", "holdout", "created_at", "confirmed_at", "width", "height", "sha256",
                   "path", "original_sha256", "original_width", "original_height")


@dataclass(frozen=True)
class ExportFormat:
    mimetype: str
    extension: str


FORMATS = {"npz": ExportFormat("application/octet-stream", "npz"), "zip": ExportFormat("application/zip", "zip")}


class ExportError(RuntimeError):
    """The rows changed under an export, or a row cannot be exported; the output is unusable."""


@dataclass
class _Member:
    name: bytes
    method: int
    compressor: object | None
    offset: int
    crc: int = 0
    size: int = 0
    compressed: int = 0


class ZipStream:
    """A ZIP64 archive written front to back, for a stream that cannot seek back.

    Each member's CRC and sizes follow its data (a data descriptor), as zipfile itself does on
    an unseekable file. Unlike zipfile, which keeps a ZipInfo object (about 500 bytes) per
    member until it writes the central directory, this spools each directory record as bytes
    to a temporary file, so 50,000 PNGs cost no more memory than 50.
    """

    def __init__(self, moment: datetime) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self._count = 0
        self._directory = tempfile.SpooledTemporaryFile(max_size=1 << 20)
        self._dos_time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
        self._dos_date = ((moment.year - 1980) << 9) | (moment.month << 5) | moment.day
        self._member = None

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def drain(self) -> bytes:
        """The bytes written since the last drain, to hand on."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def _emit(self, data: bytes) -> None:
        self._buffer += data
        self._offset += len(data)

    def start(self, name: str, *, compress: bool) -> None:
        encoded = name.encode("utf-8")
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        # Raw deflate (negative window bits), as zip members hold it.
        compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15) if compress else None
        self._member = _Member(encoded, method, compressor, self._offset)
        # Sizes unknown yet: 0xFFFFFFFF and a ZIP64 extra field, as zipfile writes with force_zip64.
        self._emit(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, FLAGS, method, self._dos_time, self._dos_date, 0,
                               0xFFFFFFFF, 0xFFFFFFFF, len(encoded), 20)
                   + encoded + struct.pack("<HHQQ", 0x0001, 16, 0, 0))

    def write(self, data: bytes) -> None:
        member = self._member
        member.crc = zlib.crc32(data, member.crc)
        member.size += len(data)
        if member.compressor is not None:
            data = member.compressor.compress(data)
        member.compressed += len(data)
        self._emit(data)

    def end(self) -> None:
        member, self._member = self._member, None
        if member.compressor is not None:
            tail = member.compressor.flush()
            member.compressed += len(tail)
            self._emit(tail)
        self._emit(struct.pack("<IIQQ", 0x08074B50, member.crc, member.compressed, member.size))
        self._directory.write(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | 45, 45, FLAGS, member.method, self._dos_time,
                        self._dos_date, member.crc, 0xFFFFFFFF, 0xFFFFFFFF, len(member.name), 28, 0, 0, 0,
                        0o100644 << 16, 0xFFFFFFFF)
            + member.name + struct.pack("<HHQQQ", 0x0001, 24, member.size, member.compressed, member.offset))
        self._count += 1

    def add(self, name: str, data: bytes, *, compress: bool = False) -> None:
        self.start(name, compress=compress)
        self.write(data)
        self.end()

    def finish(self) -> Iterator[None]:
        """Write the central directory and the end records; pauses between blocks so they can be drained."""
        start = self._offset
        self._directory.seek(0)
        while block := self._directory.read(FLUSH_BYTES):
            self._emit(block)
            yield
        self._directory.close()
        size, end64 = self._offset - start, self._offset
        # ZIP64 end record and locator, then the classic end record with its fields saturated.
        self._emit(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, (3 << 8) | 45, 45, 0, 0, self._count, self._count,
                               size, start)
                   + struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
                   + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(self._count, 0xFFFF), min(self._count, 0xFFFF),
                                 min(size, 0xFFFFFFFF), min(start, 0xFFFFFFFF), 0))
        yield


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

    def _npz(self) -> Iterator[bytes]:
        archive = ZipStream(self.opened_at)
        labels, holdout = bytearray(), bytearray()
        archive.start("x.npy", compress=True)
        archive.write(_npy_header(np.uint8, (self.rows, IMAGE_SIZE, IMAGE_SIZE)))
        for batch in self._batches(Drawing.id, Drawing.label, Drawing.holdout, Drawing.pixels):
            for row in batch:
                _check_row(row)
                labels.append(row.label)
                holdout.append(bool(row.holdout))
            archive.write(b"".join(row.pixels for row in batch))
            if archive.pending >= FLUSH_BYTES:
                yield archive.drain()
        archive.end()
        self._check_count(len(labels))
        for name, array in (("y.npy", np.frombuffer(labels, np.uint8)),
                            ("holdout.npy", np.frombuffer(holdout, np.uint8).astype(bool))):
            archive.add(name, _npy_header(array.dtype, array.shape) + array.tobytes(), compress=True)
            yield archive.drain()
        # A second pass over the same snapshot, so the ids never sit in memory all at once.
        archive.start("ids.npy", compress=True)
        archive.write(_npy_header(ID_DTYPE, (self.rows,)))
        seen = 0
        for batch in self._batches(Drawing.id):
            archive.write(np.array([row.id for row in batch], dtype=ID_DTYPE).tobytes())
            seen += len(batch)
            if archive.pending >= FLUSH_BYTES:
                yield archive.drain()
        archive.end()
        self._check_count(seen)
        for _ in archive.finish():
            yield archive.drain()

    def _image_folder(self) -> Iterator[bytes]:
        archive = ZipStream(self.opened_at)
        seen = 0
        # The manifest comes last (a zip writes one member at a time); it waits in a spooled
        # file, which stays in memory while small and moves to disk when the dataset is big.
        with tempfile.SpooledTemporaryFile(max_size=1 << 20, mode="w+", newline="", encoding="utf-8") as manifest:
            writer = csv.writer(manifest)
            writer.writerow(MANIFEST_FIELDS)
            columns = (Drawing.id, Drawing.label, Drawing.source, Drawing.holdout, Drawing.created_at,
                       Drawing.confirmed_at, Drawing.sha256, Drawing.width, Drawing.height, Drawing.pixels)
            for batch in self._batches(*columns):
                for row in batch:
                    _check_row(row)
                    png = pixels_png(row.pixels)
                    path = f"{row.label}/{row.id}.png"
                    archive.add(path, png)  # PNGs are deflated already
                    writer.writerow((row.id, row.label, row.source, int(bool(row.holdout)), _iso(row.created_at),
                                     _iso(row.confirmed_at), IMAGE_SIZE, IMAGE_SIZE,
                                     hashlib.sha256(png).hexdigest(), path, row.sha256, row.width, row.height))
                seen += len(batch)
                if archive.pending >= FLUSH_BYTES:
                    yield archive.drain()
            self._check_count(seen)
            manifest.seek(0)
            archive.start(MANIFEST, compress=True)
            while text := manifest.read(FLUSH_BYTES):
                archive.write(text.encode("utf-8"))
                yield archive.drain()
            archive.end()
        for _ in archive.finish():
            yield archive.drain()

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


def _check_row(row) -> None:
    if len(row.pixels) != PIXELS or row.label is None or not 0 <= row.label <= 9:
        raise ExportError(f"drawing {row.id} has no usable pixels or label")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


PNG_HEAD = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", IMAGE_SIZE, IMAGE_SIZE, 8, 0, 0, 0, 0))
PNG_TAIL = _png_chunk(b"IEND", b"")


def pixels_png(pixels: bytes) -> bytes:
    """A 28x28 8-bit grayscale PNG of stored pixels, unchanged: white digit on black, as MNIST.

    Written directly rather than through Pillow, whose per-image set-up made it half of a
    50,000-drawing export's time.
    """
    rows = b"".join(b"\x00" + pixels[start:start + IMAGE_SIZE] for start in range(0, PIXELS, IMAGE_SIZE))
    return PNG_HEAD + _png_chunk(b"IDAT", zlib.compress(rows)) + PNG_TAIL


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()
