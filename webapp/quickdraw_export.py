"""The dataset as Quick, Draw!'s simplified ndjson: one ``<word>.ndjson`` per class and a manifest, in a zip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, func, select
from stream_zip import ZIP_64

from webapp.dataset_links import stored_strokes
from webapp.label_sets import SetInfo
from webapp.quickdraw import RDP_EPSILON, canvas_strokes, quickdraw_record
from webapp.models import Drawing, Prediction

MANIFEST = "manifest.json"


def quickdraw_members(connection: Connection, batches: Callable, *, until, label_set: SetInfo) -> Iterator[tuple]:
    """Zip members: each class's drawings that have strokes, oldest confirmation first, then the manifest.

    ``batches(*columns, where=...)`` reads the export's snapshot; drawings without strokes
    (uploads, imports of bitmaps) cannot be written as strokes and are counted instead.
    """
    classes = label_set.class_names
    counts = {"drawings": 0, "without_strokes": 0}
    present = connection.execute(
        select(Drawing.label, func.count()).where(Drawing.status == "confirmed", Drawing.confirmed_at <= until,
                                                  Drawing.label_set_id == label_set.id)
        .group_by(Drawing.label).order_by(Drawing.label)).all() if until is not None else []
    for label, _ in present:
        if label is not None and 0 <= label < len(classes):
            yield f"{classes[label]}.ndjson", ZIP_64, _lines(connection, batches, label, classes[label], counts)
    manifest = {"format": "quickdraw-ndjson", "label_set": label_set.slug, "classes": list(classes),
                "confirmed": sum(count for _, count in present), **counts,
                "simplification": f"ink fitted into 0..255 keeping its aspect, Ramer-Douglas-Peucker epsilon "
                                  f"{RDP_EPSILON}"}
    yield MANIFEST, ZIP_64, (json.dumps(manifest, indent=1).encode("utf-8") + b"\n",)


def _lines(connection: Connection, batches: Callable, label: int, word: str, counts: dict) -> Iterator[bytes]:
    for batch in batches(Drawing.id, Drawing.created_at, Drawing.strokes_key, where=Drawing.label == label):
        cnn = dict(connection.execute(select(Prediction.drawing_id, Prediction.label).where(
            Prediction.model_name == "cnn", Prediction.drawing_id.in_([row.id for row in batch]))).all())
        lines = []
        for row in batch:
            strokes = stored_strokes(row.strokes_key)
            if not strokes:
                counts["without_strokes"] += 1
                continue
            record = quickdraw_record(word=word, key_id=row.id, moment=row.created_at,
                                      recognized=cnn.get(row.id) == label, strokes=canvas_strokes(strokes))
            lines.append(json.dumps(record, separators=(",", ":")) + "\n")
        counts["drawings"] += len(lines)
        if lines:
            yield "".join(lines).encode("utf-8")
