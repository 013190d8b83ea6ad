"""Dataset imports: a file's drawings stored in batches, deduplicated by content hash, all or nothing per batch."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from itertools import islice
from pathlib import Path

from flask import current_app
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from training.preprocess import PreprocessError, preprocess
from webapp.audit import record
from webapp.dataset import pixels_png
from webapp.dataset_links import DEFAULT_LABEL_SET, resolve_label_set, strokes_to_keep
from webapp.errors import ServiceError
from webapp.extensions import db
from webapp.formats import IMPORT_FORMATS, FormatError, Item, NpyReader, NpzReader, ZipReader
from webapp.quickdraw import NdjsonReader
from webapp.runs import maybe_trigger_automatically
from webapp.models import Drawing, LabelSet, new_id, utcnow
from webapp.storage import StorageError, get_store

log = logging.getLogger(__name__)

IMPORT_STATUSES = ("confirmed", "pending")
# One transaction and one round of object writes: big enough that commits cost little per row,
# small enough that a batch's rows and images sit in memory comfortably.
BATCH_ROWS = 2000
# How often a batch is looked at again when another import stores the same drawings first.
RACE_ATTEMPTS = 3
TICK = timedelta(microseconds=1)


@dataclass
class ImportResult:
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    batches: int = 0

    def as_json(self) -> dict:
        return asdict(self)


def _preprocessed_pixels(png: bytes, where: str) -> bytes:
    """A rendered drawing through the one preprocessing path, as uploads go."""
    try:
        return preprocess(png).pixels.tobytes()
    except PreprocessError as exc:
        raise FormatError(f"{where}: {exc.message}") from None


def open_reader(fmt: str, path: Path, *, classes: tuple[str, ...], label: str, explicit: bool):
    """The reader of ``fmt``; ``label`` is a quickdraw-npy file's class (given, or ``explicit``ly not: its stem)."""
    if fmt == "quickdraw-npy":
        return NpyReader(path, label=label, classes=classes)
    if explicit:
        raise ServiceError(400, "invalid_label", "a label is given only for quickdraw-npy files (one class each)")
    if fmt == "npz":
        return NpzReader(path, classes=classes)
    if fmt == "zip":
        return ZipReader(path, classes=classes)
    return NdjsonReader(path, classes=classes, render=_preprocessed_pixels)


def import_dataset(*, path: Path, fmt: str, label_set: str = DEFAULT_LABEL_SET, status: str = "confirmed",
                   label: str | None = None, name: str | None = None) -> ImportResult:
    """Import the drawings of the file at ``path`` as rows with source ``import``.

    The whole file is checked first, so a truncated or mislabelled one stores nothing. Then each
    batch writes its objects, then its rows in one commit; a batch that fails leaves neither. A
    drawing whose image is already stored (or earlier in the file) is counted, not stored twice,
    so an import stopped halfway can simply be run again.
    """
    if fmt not in IMPORT_FORMATS:
        raise ServiceError(400, "invalid_format", f"format must be one of: {', '.join(IMPORT_FORMATS)}")
    if status not in IMPORT_STATUSES:
        raise ServiceError(400, "invalid_status", f"status must be one of: {', '.join(IMPORT_STATUSES)}")
    target = resolve_label_set(label_set)
    classes = tuple(target.class_names)
    name = (name or Path(path).name)[:120]
    batcher = None
    try:
        reader = open_reader(fmt, Path(path), classes=classes, label=label if label is not None else Path(name).stem,
                             explicit=label is not None)
        result = ImportResult(read=reader.check())
        batcher = _Batcher(classes=classes, label_set_id=target.id, status=status, reason=f"imported from {name}")
        for batch in _chunks(reader, BATCH_ROWS):
            imported, duplicates = batcher.store(batch)
            result.imported += imported
            result.duplicates += duplicates
            result.batches += 1
    except (FormatError, ServiceError) as exc:
        if batcher is not None and batcher.imported:  # the batches that went in are on the record too
            try:
                _record(name, fmt, label_set, status, result, stopped=str(exc))
            except SQLAlchemyError:
                db.session.rollback()
                log.error("import of %s stopped after %d drawings, unrecorded", name, batcher.imported)
        if isinstance(exc, ServiceError):
            raise
        raise ServiceError(400, "invalid_file", _stopped(str(exc), batcher=batcher)) from None
    _record(name, fmt, label_set, status, result)
    if status == "confirmed" and result.imported:
        maybe_trigger_automatically(target.id)  # as a confirmation does: RETRAIN_EVERY new drawings start a run
    return result


def _record(name: str, fmt: str, label_set: str, status: str, result: ImportResult, *, stopped: str = "") -> None:
    detail = {"format": fmt, "label_set": label_set, "status": status, **result.as_json()}
    record("dataset.import", target=name, detail=detail | ({"stopped": stopped[:200]} if stopped else {}))
    db.session.commit()


def _stopped(message: str, *, batcher) -> str:
    if batcher is None or not batcher.imported:
        return f"{message}; nothing was imported"
    return (f"{message}; the {batcher.imported} drawings of the batches before it were imported "
            "(run the import again once the file is fixed: they are skipped as duplicates)")


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@dataclass
class _Batcher:
    classes: tuple[str, ...]
    label_set_id: int
    status: str
    reason: str
    imported: int = 0
    seen: set = field(default_factory=set)
    holdout_counts: dict | None = None
    last_moment: object = None

    def store(self, items: list[Item]) -> tuple[int, int]:
        """Store one batch: objects first, then its rows in one commit. (imported, duplicates)."""
        for _ in range(RACE_ATTEMPTS):
            fresh, duplicates = self._new_items(items)
            if not fresh:
                return 0, duplicates
            rows, objects, counts = self._rows(fresh)
            written = self._write(objects)
            try:
                inserted = self._insert_unless_taken(rows)
            except SQLAlchemyError as exc:
                db.session.rollback()
                self._delete(written)
                log.warning("import batch failed: %s", exc)
                raise ServiceError(503, "database_unavailable",
                                   self._refusal("the database refused a batch")) from exc
            if inserted:
                self.holdout_counts = counts
                self.seen.update(digest for _, digest, _ in fresh)
                self.imported += len(rows)
                return len(rows), duplicates
            # Another import stored some of these drawings while this batch's objects were written:
            # those objects go, and the batch is looked at again (its duplicates are skipped then).
            self._delete(written)
        raise ServiceError(409, "import_conflict", self._refusal("other imports of the same drawings kept "
                                                                 "overtaking this one; run it again"))

    def _insert_unless_taken(self, rows: list[dict]) -> bool:
        """Insert the batch's rows and commit, unless one of their images was stored since _new_items
        looked (then nothing is written and False returned). Locking the set's row first makes the last
        look and the insert one step for every import into the set: PostgreSQL holds the row lock, SQLite
        the database's write lock, until the commit."""
        db.session.execute(update(LabelSet.__table__).where(LabelSet.id == self.label_set_id)
                           .values(name=LabelSet.name))
        if self._stored_digests([row["sha256"] for row in rows]):
            db.session.rollback()
            return False
        db.session.execute(insert(Drawing.__table__), rows)
        db.session.commit()
        return True

    def _refusal(self, what: str) -> str:
        return _stopped(what, batcher=self)

    def _new_items(self, items: list[Item]) -> tuple[list[tuple[Item, bytes, bytes]], int]:
        """The batch's drawings not stored already nor seen earlier in the file, with image and digest."""
        candidates, in_batch = [], set()
        for item in items:
            image = item.image if item.image is not None else pixels_png(item.pixels)
            digest = hashlib.sha256(image).digest()
            if digest not in self.seen and digest not in in_batch:
                in_batch.add(digest)
                candidates.append((item, digest, image))
        stored = self._stored_digests([digest.hex() for _, digest, _ in candidates]) if candidates else set()
        db.session.rollback()  # end the read, so the batch's writes do not wait behind it
        fresh = [candidate for candidate in candidates if candidate[1].hex() not in stored]
        self.seen.update(bytes.fromhex(digest) for digest in stored)
        return fresh, len(items) - len(fresh)

    def _stored_digests(self, digests: list[str]) -> set[str]:
        """Which of these sha256 hex digests the set already has a drawing of."""
        return set(db.session.scalars(select(Drawing.sha256).where(
            Drawing.sha256.in_(digests), Drawing.label_set_id == self.label_set_id)))

    def _rows(self, fresh: list) -> tuple[list[dict], list[tuple[str, bytes, str]], dict]:
        counts = dict(self.holdout_counts or self._stored_holdout_counts())
        confirmed = self.status == "confirmed"
        # Distinct, increasing moments keep the file's order in every export (ordered by confirmation).
        now = utcnow()
        start = now - TICK * len(fresh)
        if self.last_moment is not None and start <= self.last_moment:
            start = self.last_moment + TICK
        rows, objects = [], []
        for index, (item, digest, image) in enumerate(fresh):
            drawing_id, moment, label = new_id(), start + TICK * index, self.classes.index(item.label)
            key = f"drawings/{drawing_id[:2]}/{drawing_id}.png"
            objects.append((key, image, "image/png"))
            row = dict(id=drawing_id, label_set_id=self.label_set_id, created_at=moment, source="import",
                       label=label, status=self.status,
                       object_key=key, content_type="image/png", sha256=digest.hex(), size_bytes=len(image),
                       width=_png_size(image)[0], height=_png_size(image)[1], pixels=item.pixels, client_id=None,
                       confirmed_at=moment if confirmed else None, first_confirmed_at=moment if confirmed else None,
                       holdout=confirmed and _holdout(counts, label, item.holdout), batched_at=None,
                       status_reason=self.reason[:255], not_digit=False)
            if item.strokes is not None:
                kept = strokes_to_keep(drawing_id, item.strokes)
                objects.append((kept.key, kept.data, "application/json"))
                row.update(kept.columns)
            rows.append(row)
        self.last_moment = start + TICK * (len(fresh) - 1)
        return rows, objects, counts

    def _stored_holdout_counts(self) -> dict[int, list[int]]:
        """Per label: [decided, held] over drawings already confirmed once, as curation counts them."""
        counts = {label: [0, 0] for label in range(len(self.classes))}
        for label, decided, held in db.session.execute(
                select(Drawing.label, func.count(), func.coalesce(func.sum(Drawing.holdout.cast(db.Integer)), 0))
                .where(Drawing.first_confirmed_at.is_not(None), Drawing.label.is_not(None),
                       Drawing.label_set_id == self.label_set_id)
                .group_by(Drawing.label)):
            if label in counts:
                counts[label] = [int(decided), int(held)]
        db.session.rollback()
        return counts

    def _write(self, objects: list[tuple[str, bytes, str]]) -> list[str]:
        """Write every object of a batch, or none (the store removes what it wrote of a failed batch)."""
        try:
            get_store().put_many(objects)
        except StorageError as exc:
            log.warning("import batch failed: %s", exc)
            raise ServiceError(503, "storage_unavailable", self._refusal("image storage refused a batch")) from exc
        return [key for key, _, _ in objects]

    def _delete(self, keys: list[str]) -> None:
        try:
            get_store().delete_many(keys)
        except StorageError:
            log.error("%d objects of a failed import batch left for `flask storage reconcile`", len(keys))


def _holdout(counts: dict[int, list[int]], label: int, given: bool | None) -> bool:
    """The file's own split when it has one (an export keeps its holdout), else HOLDOUT_FRACTION per label."""
    decided, held = counts.setdefault(label, [0, 0])
    holdout = given if given is not None else held < current_app.config["HOLDOUT_FRACTION"] * (decided + 1)
    counts[label] = [decided + 1, held + int(holdout)]
    return holdout


def _png_size(png: bytes) -> tuple[int, int]:
    # The IHDR chunk comes first in every PNG: width and height without decoding.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


@contextmanager
def spooled_upload(request, *, limit: int) -> Iterator[Path]:
    """The request's body in a temporary file (readers seek, and a zip's directory is at its end),
    read in blocks so memory stays flat, refused past ``limit`` bytes."""
    too_large = ServiceError(413, "file_too_large", f"the file is too large; the limit is {limit:,} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    request.max_content_length = limit  # this request's own limit, instead of the image-sized MAX_CONTENT_LENGTH
    with tempfile.NamedTemporaryFile(prefix="inkling-import-", suffix=".upload") as handle:
        size = 0
        while block := request.stream.read(1 << 20):
            size += len(block)
            if size > limit:
                raise too_large
            handle.write(block)
        if size == 0:
            raise ServiceError(400, "invalid_file", "send the dataset file as the request body")
        handle.flush()
        yield Path(handle.name)
