"""The gate's reference set in a worker: read from the object store, built there once when
missing, and kept in the process, since a version's set never changes."""

from __future__ import annotations

import logging

from flask import current_app

from webapp.storage import StorageError, get_store

log = logging.getLogger(__name__)

# Object key -> Samples. Keys name the generator's version, so an entry is never stale.
_loaded: dict[str, object] = {}


def load_reference(mnist):
    """The current version's reference set: from this process, else the store, else built
    (where the fonts are, unless REFERENCE_BUILD is off) and stored. A deployment without fonts falls back on the newest set
    stored under another version, with a warning, and on none (the gate then judges on MNIST
    and the holdout) if there is none."""
    from training.finetune import Samples
    from training.reference import generator_version, reference_key

    key = reference_key(generator_version())
    if key in _loaded:
        return _loaded[key]
    store = get_store()
    reference = _read(store, key) if store.exists(key) else None
    if reference is None and current_app.config["REFERENCE_BUILD"]:
        reference = _build(store, key, mnist)
    if reference is None:
        return _stale(store) or Samples.empty()
    _loaded[key] = reference
    return reference


def _read(store, key: str):
    from training.finetune import Samples
    from training.reference import from_bytes

    try:
        reference = from_bytes(store.get(key))
    except ValueError as exc:
        log.error("the stored reference set %s is unusable: %s", key, exc)
        return None
    return Samples(reference["x"], reference["y"])


def _build(store, key: str, mnist):
    from training.finetune import Samples
    from training.reference import build, to_bytes
    from training.writers import FontsMissing

    log.info("no reference set %s in the object store: building it (about a minute)", key)
    try:
        reference = build(x_test=mnist.x_test, y_test=mnist.y_test)
    except FontsMissing as exc:
        log.warning("the reference set cannot be built here (%s): build it where the fonts are and "
                    "`flask reference upload` it", exc)
        return None
    try:
        store.put(key, to_bytes(reference), content_type="application/octet-stream")
    except StorageError as exc:  # judged on it all the same; the next process tries to store it again
        log.warning("the reference set was built but not stored: %s", exc)
    return Samples(reference["x"], reference["y"])


def _stale(store):
    """The newest reference set stored under another generator version, or None."""
    from training.reference import REFERENCE_PREFIX

    for stored in sorted(store.list(REFERENCE_PREFIX), key=lambda entry: entry.modified, reverse=True):
        reference = _read(store, stored.key)
        if reference is not None:
            log.warning("judging on the reference set %s, made by another version of its generator: "
                        "build and upload the current one (`flask reference build`)", stored.key)
            return reference
    log.warning("no reference set in the object store: candidates are judged on MNIST and the holdout alone")
    return None
