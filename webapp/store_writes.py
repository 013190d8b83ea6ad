"""Writing one drawing's objects (image, strokes) side by side, all or none."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

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


def put_together(store: ObjectStore, objects: list[tuple[str, bytes, str]]) -> None:
    """Write several objects (key, data, content type) side by side, all or none.

    Each put waits on its own fsync or S3 round trip; side by side, a drawing's strokes cost
    about the time of its image rather than as much again. If one fails, those written are
    deleted (or left for `flask storage reconcile`) and its StorageError is raised.
    """
    if len(objects) == 1:
        key, data, content_type = objects[0]
        store.put(key, data, content_type=content_type)
        return
    futures = [_put_pool().submit(store.put, key, data, content_type=content_type) for key, data, content_type in objects[1:]]
    errors: list[StorageError] = []
    try:
        store.put(objects[0][0], objects[0][1], content_type=objects[0][2])
    except StorageError as exc:
        errors.append(exc)
    for future in futures:
        try:
            future.result()
        except StorageError as exc:
            errors.append(exc)
    if errors:
        try:
            store.delete_many([key for key, _, _ in objects])
        except StorageError:
            log.error("orphan objects %s left for the reconciler", ", ".join(key for key, _, _ in objects))
        raise errors[0]
