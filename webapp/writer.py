"""The write-behind: answered predictions stored after the response, a batch per commit, by one thread per process."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from webapp.extensions import db
from webapp.models import Drawing, Prediction
from webapp.storage import StorageError, get_store
from webapp.store_writes import put_together
from webapp.strokes import CONTENT_TYPE as STROKES_CONTENT_TYPE

log = logging.getLogger(__name__)

STORAGE_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class AnsweredPrediction:
    """A prediction already answered, waiting to be stored: its rows' columns, the image and its strokes."""

    app: object
    drawing: dict
    data: bytes
    predictions: list[dict]
    strokes: bytes | None = None

    @property
    def id(self) -> str:
        return self.drawing["id"]

    @property
    def objects(self) -> list[tuple[str, bytes, str]]:
        """(key, data, content type) of the image and, if it has them, its strokes."""
        objects = [(self.drawing["object_key"], self.data, self.drawing["content_type"])]
        if self.drawing.get("strokes_key"):
            objects.append((self.drawing["strokes_key"], self.strokes, STROKES_CONTENT_TYPE))
        return objects



def store_predictions(batch: list[AnsweredPrediction]) -> int:
    """Store a batch of answered predictions: every object, then all their rows in one commit.

    One commit for many drawings is what lets the writer keep up under load (a commit is a
    disk flush), and the rows go in as bulk INSERTs of plain values, without the ORM's
    per-object bookkeeping. The order is the one save uses, so a row never points at a
    missing object. Returns how many were stored.
    """
    app = batch[0].app
    writer = app.extensions["inkling.writer"]
    with app.app_context():
        store = get_store()
        written: list[AnsweredPrediction] = []
        try:
            for item in batch:
                try:
                    put_together(store, item.objects)
                except StorageError as exc:
                    writer.trip()
                    log.warning("%d answered predictions not stored: %s", len(batch) - len(written), exc)
                    break
                written.append(item)
            if not written:
                return 0
            try:
                db.session.execute(insert(Drawing), [item.drawing for item in written])
                db.session.execute(insert(Prediction), [row for item in written for row in item.predictions])
                db.session.commit()
            except SQLAlchemyError as exc:
                db.session.rollback()
                writer.trip()
                log.warning("%d answered predictions not stored: %s", len(written), exc)
                for key in (key for item in written for key, _, _ in item.objects):
                    try:
                        store.delete(key)
                    except StorageError:
                        log.error("orphan object %s left for the reconciler", key)
                return 0
            return len(written)
        finally:
            db.session.remove()



class PredictionWriter:
    """One background thread per process that stores answered predictions, a batch per commit.

    The thread gathers what arrives within ``linger`` seconds into one batch: under load that
    is one commit (and one round of ORM work) for dozens of predictions instead of one each,
    so the writer keeps up with the answers (README, Performance). Bounded: when it falls
    behind (or storage failed a moment ago) new predictions are answered without being
    stored rather than queued without limit. The thread starts with the first prediction, so
    in the worker process, never in a parent that forks.
    """

    def __init__(self, *, max_pending: int = 1024, retry_seconds: float = STORAGE_RETRY_SECONDS,
                 batch_size: int = 64, linger: float = 0.05):
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._batch_size = batch_size
        self._linger = linger
        self._retry_seconds = retry_seconds
        self._closed_until = 0.0
        self._lock = threading.Lock()
        self._stored = threading.Condition(self._lock)
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None

    def accepting(self) -> bool:
        return time.monotonic() >= self._closed_until

    def trip(self) -> None:
        self._closed_until = time.monotonic() + self._retry_seconds

    def submit(self, item: AnsweredPrediction) -> bool:
        with self._lock:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                return False
            self._pending.add(item.id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)
                self._thread.start()
        return True

    def wait_for(self, drawing_id: str, timeout: float = 5.0) -> bool:
        """Wait while ``drawing_id`` is queued here; False if it was not (or is still) pending."""
        deadline = time.monotonic() + timeout
        with self._stored:
            if drawing_id not in self._pending:
                return False
            while drawing_id in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._stored.wait(remaining)
        return True

    def _next_batch(self) -> list[AnsweredPrediction]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self._linger
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                store_predictions(batch)
            except Exception:  # the thread must outlive any one batch
                log.exception("storing %d answered predictions failed", len(batch))
            finally:
                with self._stored:
                    self._pending.difference_update(item.id for item in batch)
                    self._stored.notify_all()
                for _ in batch:
                    self._queue.task_done()

    def flush(self, timeout: float = 30) -> None:
        """Wait until everything submitted so far is stored (tests, and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._queue.unfinished_tasks} predictions still being stored")
            time.sleep(0.01)
