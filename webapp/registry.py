"""The model registry: which version of each network is active, and the loaded ONNX sessions.

The database says which versions are active; their artifacts come from the object store,
are checked against the sha256 recorded at publication, and are loaded once per process.
A request gets an immutable snapshot, so it sees either the old pair or the new pair of
models, never a half-loaded one; a newly activated version is picked up within
``MODEL_REFRESH_SECONDS`` without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from flask import current_app
from sqlalchemy import select

from training import IMAGE_SIZE, MODEL_NAMES
from training.predictor import OnnxModel, Predictor
from training.versions import sha256_bytes
from webapp.extensions import db
from webapp.memory import mmapped_allocations
from webapp.models import ModelVersion

log = logging.getLogger(__name__)


class ModelsUnavailable(RuntimeError):
    """No usable active version of some network."""


@dataclass(frozen=True)
class Snapshot:
    predictor: Predictor
    versions: dict[str, int] = field(default_factory=dict)


class ModelRegistry:
    def __init__(self, store, *, refresh_seconds: float = 2.0):
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int], OnnxModel] = {}
        self.last_error: str | None = None

    def active_rows(self) -> dict[str, ModelVersion]:
        rows = db.session.scalars(select(ModelVersion).where(ModelVersion.status == "active")).all()
        return {row.name: row for row in rows}

    def snapshot(self) -> Snapshot:
        """The current pair of models, refreshed from the database at most every few seconds."""
        now = time.monotonic()
        stale = self._snapshot is None or now - self._checked_at >= self.refresh_seconds
        # Only one thread refreshes; the others keep answering with the snapshot they have.
        if stale and self._lock.acquire(blocking=self._snapshot is None):
            try:
                self._refresh()
                self._checked_at = time.monotonic()
            finally:
                self._lock.release()
        if self._snapshot is None:
            raise ModelsUnavailable(self.last_error or "no active model versions")
        return self._snapshot

    def _refresh(self) -> None:
        try:
            rows = self.active_rows()
        except Exception as exc:  # the database is down: keep serving what is loaded
            self.last_error = f"cannot read active versions: {exc.__class__.__name__}"
            log.warning("model registry: %s", self.last_error)
            return
        wanted = {name: rows[name].version for name in MODEL_NAMES if name in rows}
        if self._snapshot is not None and wanted == self._snapshot.versions:
            # Also after a rollback from a version that failed to load: that failure is over.
            self.last_error = None
            return
        missing = [name for name in MODEL_NAMES if name not in rows]
        if missing:
            self.last_error = f"no active version of {', '.join(missing)}; run `flask --app webapp models import-base`"
            return
        # Loaded from mmap, so that a version's memory goes back to the system once it is retired.
        with mmapped_allocations():
            try:
                models = {name: self._session(rows[name]) for name in MODEL_NAMES}
            except Exception as exc:
                # A version that cannot be loaded is never served; the previous snapshot stays.
                self.last_error = str(exc)
                log.error("model registry: %s", exc)
                return
            self._snapshot = Snapshot(Predictor(models), wanted)
            # Requests still holding the old snapshot keep its sessions alive until they finish.
            self._sessions = {key: model for key, model in self._sessions.items() if wanted.get(key[0]) == key[1]}
        self.last_error = None
        log.info("model registry: serving %s", ", ".join(f"{n} v{v}" for n, v in wanted.items()))

    def _session(self, row: ModelVersion) -> OnnxModel:
        key = (row.name, row.version)
        if key not in self._sessions:
            model = OnnxModel(read_onnx(self.store, row), name=row.name, version=row.version)
            # The first run allocates the session's working buffers: let that happen here, from
            # mmap (see webapp.memory), not in the first request.
            model.predict(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8))
            self._sessions[key] = model
        return self._sessions[key]

    def status(self) -> dict:
        versions = self._snapshot.versions if self._snapshot else {}
        return {"loaded": versions, "error": self.last_error}


def read_onnx(store, row: ModelVersion) -> bytes:
    """A version's ONNX file as published; ModelsUnavailable if it fails the sha256 recorded then."""
    data = store.get(row.onnx_key)
    if sha256_bytes(data) != row.onnx_sha256:
        raise ModelsUnavailable(f"{row.name} v{row.version}: ONNX artifact fails its checksum; not loaded")
    return data


def upload_version_files(store, stored, prefix: str) -> None:
    """Copy a published version's files (training.versions layout) into the store under ``prefix``."""
    from training.versions import KERAS_FILE, MANIFEST_FILE, ONNX_FILE

    for filename in (KERAS_FILE, ONNX_FILE, MANIFEST_FILE):
        store.put(prefix + filename, (stored.path / filename).read_bytes(),
                  content_type="application/json" if filename == MANIFEST_FILE else "application/octet-stream")


def get_registry() -> ModelRegistry:
    return current_app.extensions["inkling.registry"]
