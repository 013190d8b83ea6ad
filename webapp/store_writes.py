"""Writing one drawing's objects (image, strokes) side by side, all or none."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from webapp.storage import ObjectStore, StorageError

log = logging.getLogger(__name__)

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _put_pool() -> ThreadPoolExecutor:
    """Threads for put_together, made in the process that uses them (a pool forked from a parent has none)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="object-put"))
        return _pool[1]


class PutAhead:
    """An object written while the request does the rest of its work (reading the drawing with the
    networks, the image's own write), so that its wait on the disk or on S3 costs the request
    nothing it was not already waiting for.

    Hand it to put_together, which waits for it and removes it with the others if any write fails;
    or, when the request fails before that, call discard().
    """

    def __init__(self, store: ObjectStore, key: str, data: bytes, content_type: str):
        self.store, self.key = store, key
        self.future: Future = _put_pool().submit(store.put, key, data, content_type=content_type)

    def discard(self) -> None:
        """Wait for the write, then remove the object: no row will ever point at it."""
        try:
            self.future.result()
        except Exception:  # noqa: BLE001 - whatever stopped the write, there is nothing to keep
            pass
        try:
            self.store.delete(self.key)
        except StorageError:
            log.error("orphan object %s left for the reconciler", self.key)


def put_together(store: ObjectStore, objects: list[tuple[str, bytes, str]], ahead: Sequence[PutAhead] = ()) -> None:
    """Write several objects (key, data, content type) side by side, all or none, with those already
    on their way (``ahead``).

    Each put waits on its own fsync or S3 round trip; side by side, a drawing's strokes cost
    about the time of its image rather than as much again. If one fails, those written are
    deleted (or left for `flask storage reconcile`) and its StorageError is raised.
    """
    started = [put.future for put in ahead]
    started += [_put_pool().submit(store.put, key, data, content_type=content_type)
                for key, data, content_type in objects[1:]]
    errors: list[StorageError] = []
    try:
        store.put(objects[0][0], objects[0][1], content_type=objects[0][2])
    except StorageError as exc:
        errors.append(exc)
    for future in started:
        try:
            future.result()
        except StorageError as exc:
            errors.append(exc)
    if errors:
        keys = [key for key, _, _ in objects] + [put.key for put in ahead]
        try:
            store.delete_many(keys)
        except StorageError:
            log.error("orphan objects %s left for the reconciler", ", ".join(keys))
        raise errors[0]
