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

from training import IMAGE_SIZE, MODEL_NAMES, NUM_CLASSES
from training.predictor import OnnxModel, Predictor
from training.versions import sha256_bytes
from webapp.extensions import db
from webapp.memory import mmapped_allocations
from webapp.models import DIGITS_ID, ModelVersion

log = logging.getLogger(__name__)


class ModelsUnavailable(RuntimeError):
    """No usable active version of some network."""


class NoModel(ModelsUnavailable):
    """A label set that has never had an active version: it is still collecting drawings."""


@dataclass(frozen=True)
class Snapshot:
    predictor: Predictor
    versions: dict[str, int] = field(default_factory=dict)


@dataclass
class _SetState:
    """One label set's models in this process."""

    snapshot: Snapshot | None = None
    checked_at: float = 0.0
    last_error: str | None = None
    never_trained: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelRegistry:
    def __init__(self, store, *, refresh_seconds: float = 2.0):
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._states: dict[int, _SetState] = {}
        self._states_lock = threading.Lock()
        self._sessions: dict[tuple[int, str, int], OnnxModel] = {}

    @property
    def last_error(self) -> str | None:
        """The digits models' problem, if any (what /healthz reports)."""
        return self._state(DIGITS_ID).last_error

    def _state(self, label_set_id: int) -> _SetState:
        state = self._states.get(label_set_id)
        if state is None:
            with self._states_lock:
                state = self._states.setdefault(label_set_id, _SetState())
        return state

    def active_rows(self, label_set_id: int = DIGITS_ID) -> dict[str, ModelVersion]:
        rows = db.session.scalars(select(ModelVersion).where(ModelVersion.status == "active",
                                                             ModelVersion.label_set_id == label_set_id)).all()
        return {row.name: row for row in rows}

    def snapshot(self, label_set_id: int = DIGITS_ID) -> Snapshot:
        """A label set's current pair of models, refreshed from the database at most every few seconds."""
        state = self._state(label_set_id)
        now = time.monotonic()
        stale = state.snapshot is None or now - state.checked_at >= self.refresh_seconds
        # Only one thread refreshes; the others keep answering with the snapshot they have.
        if stale and state.lock.acquire(blocking=state.snapshot is None):
            try:
                self._refresh(label_set_id, state)
                state.checked_at = time.monotonic()
            finally:
                state.lock.release()
        if state.snapshot is None:
            error = NoModel if state.never_trained else ModelsUnavailable
            raise error(state.last_error or "no active model versions")
        return state.snapshot

    def _refresh(self, label_set_id: int, state: _SetState) -> None:
        try:
            rows = self.active_rows(label_set_id)
        except Exception as exc:  # the database is down: keep serving what is loaded
            state.last_error = f"cannot read active versions: {exc.__class__.__name__}"
            log.warning("model registry: %s", state.last_error)
            return
        wanted = {name: rows[name].version for name in MODEL_NAMES if name in rows}
        if state.snapshot is not None and wanted == state.snapshot.versions:
            # Also after a rollback from a version that failed to load: that failure is over.
            state.last_error = None
            return
        missing = [name for name in MODEL_NAMES if name not in rows]
        if missing:
            state.never_trained = not rows and label_set_id != DIGITS_ID and not _ever_trained(label_set_id)
            state.last_error = (f"no active version of {', '.join(missing)}; "
                                + ("run `flask --app webapp models import-base`" if label_set_id == DIGITS_ID
                                   else "its first training run has not published one yet"))
            return
        # Loaded from mmap, so that a version's memory goes back to the system once it is retired.
        with mmapped_allocations():
            try:
                models = {name: self._session(label_set_id, rows[name]) for name in MODEL_NAMES}
            except Exception as exc:
                # A version that cannot be loaded is never served; the previous snapshot stays.
                state.last_error = str(exc)
                log.error("model registry: %s", exc)
                return
            state.snapshot = Snapshot(Predictor(models), wanted)
            # Requests still holding the old snapshot keep its sessions alive until they finish.
            self._sessions = {key: model for key, model in self._sessions.items()
                              if key[0] != label_set_id or wanted.get(key[1]) == key[2]}
        state.last_error, state.never_trained = None, False
        log.info("model registry: serving %s", ", ".join(f"{n} v{v}" for n, v in wanted.items()))

    def _session(self, label_set_id: int, row: ModelVersion) -> OnnxModel:
        key = (label_set_id, row.name, row.version)
        if key not in self._sessions:
            model = OnnxModel(read_onnx(self.store, row), name=row.name, version=row.version,
                              num_classes=NUM_CLASSES if label_set_id == DIGITS_ID else None)
            # The first run allocates the session's working buffers: let that happen here, from
            # mmap (see webapp.memory), not in the first request.
            model.predict(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8))
            self._sessions[key] = model
        return self._sessions[key]

    def status(self, label_set_id: int = DIGITS_ID) -> dict:
        state = self._state(label_set_id)
        versions = state.snapshot.versions if state.snapshot else {}
        return {"loaded": versions, "error": state.last_error}


def _ever_trained(label_set_id: int) -> bool:
    return db.session.scalar(select(ModelVersion.id).where(ModelVersion.label_set_id == label_set_id)
                             .limit(1)) is not None


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
