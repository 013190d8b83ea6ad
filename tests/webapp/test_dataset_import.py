"""Dataset import (npz, the product's zip, Quick, Draw! ndjson and npy) and the Quick, Draw! ndjson export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, text

from webapp.extensions import db
from webapp.models import AuditEvent, Drawing, Prediction, User

from .conftest import TABLES, make_app, stored_drawing_keys

IMPORT = "/api/v1/dataset/import"


def empty(app) -> None:
    from webapp.storage import get_store

    with app.app_context():
        for table in TABLES:
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        store = get_store()
        for prefix in ("drawings/",):
            for obj in list(store.list(prefix)):
                store.delete(obj.key)


@pytest.fixture
def app(database_url, object_root, tmp_path):
    """The app on an empty database and store; afterwards every row has its object and every object its row."""
    app = make_app(database_url, object_root, tmp_path, HOLDOUT_FRACTION=0.25, RETRAIN_EVERY=0)
    empty(app)
    yield app
    rows, objects = stored_drawing_keys(app)
    assert rows == objects, f"{len(rows - objects)} rows without their object, {len(objects - rows)} objects without a row"
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def small_batches(monkeypatch):
    from webapp import importing

    monkeypatch.setattr(importing, "BATCH_ROWS", 7)


def bitmaps(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 784), dtype=np.uint8)


def import_file(app, path, fmt, **options):
    from webapp.importing import import_dataset

    with app.test_request_context():
        return import_dataset(path=path, fmt=fmt, **options)


def refused(app, path, fmt, code="invalid_file", **options) -> str:
    from webapp.errors import ServiceError

    with pytest.raises(ServiceError) as caught:
        import_file(app, path, fmt, **options)
    assert caught.value.code == code, caught.value.message
    assert drawing_count(app) == 0
    return caught.value.message


def drawing_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Drawing))


def rows_in_order(app) -> list[Drawing]:
    with app.app_context():
        rows = db.session.scalars(select(Drawing).order_by(Drawing.confirmed_at, Drawing.id)).all()
        db.session.expunge_all()
        return rows


def stroke(x0, y0, x1, y1, points=30, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    xs = np.linspace(x0, x1, points) + rng.normal(0, jitter, points)
    ys = np.linspace(y0, y1, points) + rng.normal(0, jitter, points)
    return [[round(float(v), 2) for v in xs], [round(float(v), 2) for v in ys]]


def ndjson_lines(count: int) -> list[dict]:
    """Ones (one down stroke) and sevens (a bar, then a slanted down stroke), each a little different."""
    lines = []
    for index in range(count):
        shift = index * 3
        if index % 2:
            drawing = [stroke(100 + shift, 20, 100, 230, seed=index)]
        else:
            drawing = [stroke(40, 30 + shift, 200, 30 + shift, seed=index), stroke(200, 30 + shift, 90, 240, seed=index)]
        lines.append({"word": "1" if index % 2 else "7", "countrycode": "GB", "timestamp": "2017-03-01 00:00:00 UTC",
                      "recognized": True, "key_id": str(index), "drawing": drawing})
    return lines


def write_ndjson(path, lines) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])


def test_quickdraw_npy_is_imported_with_its_stem_as_label_and_duplicates_skipped(app, tmp_path, small_batches):
    x = bitmaps(40)
    x[30:35] = x[0:5]  # the same drawing twice in one file
    path = tmp_path / "3.npy"
    np.save(path, x)
    result = import_file(app, path, "quickdraw-npy")
    assert (result.read, result.imported, result.duplicates) == (40, 35, 5)
    assert result.batches == 6
    rows = rows_in_order(app)
    assert [row.label for row in rows] == [3] * 35
    assert {(row.source, row.status, row.width, row.height) for row in rows} == {("import", "confirmed", 28, 28)}
    # The file's order, its pixels unchanged, and a content hash of the stored image.
    assert [row.pixels for row in rows] == [x[index].tobytes() for index in range(30)] + \
        [x[index].tobytes() for index in range(35, 40)]
    assert all(row.confirmed_at == row.first_confirmed_at for row in rows)
    with app.app_context():
        from webapp.storage import get_store

        png = get_store().get(rows[0].object_key)
        assert hashlib.sha256(png).hexdigest() == rows[0].sha256
        assert Image.open(io.BytesIO(png)).tobytes() == x[0].tobytes()
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "dataset.import"))
        assert event.detail["imported"] == 35 and event.target == "3.npy"
    # About HOLDOUT_FRACTION held out, decided as curation decides it.
    assert sum(row.holdout for row in rows) == 9
    again = import_file(app, path, "quickdraw-npy", status="pending")
    assert (again.imported, again.duplicates) == (0, 40) and drawing_count(app) == 35


def test_npy_label_option_pending_status_and_bad_labels(app, tmp_path):
    path = tmp_path / "cat.npy"
    np.save(path, bitmaps(5))
    assert "label 'cat' is not one of" in refused(app, path, "quickdraw-npy")
    refused(app, path, "quickdraw-npy", label="10")
    refused(app, path, "quickdraw-npy", code="unknown_label_set", label_set="no-such-set")
    refused(app, path, "npz", code="invalid_label", label="3")  # a label is for one-class files only
    result = import_file(app, path, "quickdraw-npy", label="8", status="pending")
    assert result.imported == 5
    rows = rows_in_order(app)
    assert {(row.label, row.status, row.holdout, row.confirmed_at) for row in rows} == {(8, "pending", False, None)}


def test_quickdraw_npy_seeds_a_new_label_set_and_stays_out_of_digits(app, tmp_path):
    from uuid import uuid4

    from webapp import label_sets

    slug = f"animals-{uuid4().hex[:8]}"
    with app.app_context():
        label_sets.create(slug=slug, classes=["cat", "giraffe", "sheep", "bat", "octopus", "camel"])
        db.session.commit()
        set_id = label_sets.find(slug).id
    np.save(tmp_path / "1.npy", bitmaps(4))
    refused(app, tmp_path / "1.npy", "quickdraw-npy", label_set=slug)  # "1" is no animal
    np.save(tmp_path / "giraffe.npy", bitmaps(4))
    assert import_file(app, tmp_path / "giraffe.npy", "quickdraw-npy", label_set=slug).imported == 4
    # The same pictures mean a 1 in digits: they are not duplicates there.
    assert import_file(app, tmp_path / "1.npy", "quickdraw-npy").imported == 4
    rows = rows_in_order(app)
    assert sorted((row.label_set_id, row.label) for row in rows) == [(1, 1)] * 4 + [(set_id, 1)] * 4


def test_npy_of_the_wrong_shape_is_refused(app, tmp_path):
    path = tmp_path / "3.npy"
    np.save(path, bitmaps(4).reshape(4, 28, 28))
    assert "(N, 784) uint8" in refused(app, path, "quickdraw-npy")


def test_npz_keeps_labels_and_holdout(app, tmp_path):
    x, y = bitmaps(12).reshape(12, 28, 28), np.arange(12, dtype=np.uint8) % 10
    holdout = np.arange(12) % 4 == 0
    path = tmp_path / "digits.npz"
    np.savez_compressed(path, x=x, y=y, holdout=holdout)
    assert import_file(app, path, "npz").imported == 12
    rows = rows_in_order(app)
    assert [row.label for row in rows] == y.tolist()
    assert [row.holdout for row in rows] == holdout.tolist()
    assert [row.pixels for row in rows] == [image.tobytes() for image in x]


def test_npz_with_a_label_outside_the_set_stores_nothing(app, tmp_path):
    path = tmp_path / "digits.npz"
    np.savez(path, x=bitmaps(3).reshape(3, 28, 28), y=np.array([1, 12, 3]))
    assert "y[1]: label '12'" in refused(app, path, "npz")


def test_ndjson_is_rendered_through_the_one_preprocessing_path(app, tmp_path):
    from training.preprocess import preprocess

    lines = ndjson_lines(6)
    path = tmp_path / "mixed.ndjson"
    write_ndjson(path, lines)
    assert import_file(app, path, "quickdraw-ndjson").imported == 6
    rows = rows_in_order(app)
    assert [row.label for row in rows] == [7, 1, 7, 1, 7, 1]
    with app.app_context():
        from webapp.storage import get_store

        store = get_store()
        for row, line in zip(rows, lines):
            image = store.get(row.object_key)
            assert (row.width, row.height) == (320, 320) == Image.open(io.BytesIO(image)).size
            assert row.pixels == preprocess(image).pixels.tobytes()
            # The strokes are kept beside the image, in the pad's shape, and the row names them.
            assert row.strokes_key == row.object_key.replace(".png", ".strokes.json")
            kept = json.loads(store.get(row.strokes_key))
            assert [[stroke["x"], stroke["y"]] for stroke in kept] == line["drawing"]


def test_ndjson_with_an_unknown_word_or_bad_strokes_stores_nothing(app, tmp_path):
    path = tmp_path / "bad.ndjson"
    lines = ndjson_lines(4)
    lines[2]["word"] = "cat"
    write_ndjson(path, lines)
    assert "line 3: label 'cat'" in refused(app, path, "quickdraw-ndjson")
    lines[2]["word"], lines[3]["drawing"] = "1", [[[1, 2], [3]]]
    write_ndjson(path, lines)
    assert "line 4" in refused(app, path, "quickdraw-ndjson")


@pytest.mark.parametrize("fmt", ["npz", "zip", "quickdraw-ndjson", "quickdraw-npy"])
def test_a_truncated_file_of_each_format_is_refused_with_nothing_stored(app, tmp_path, fmt, small_batches):
    if fmt == "quickdraw-npy":
        path = tmp_path / "3.npy"
        np.save(path, bitmaps(50))
    elif fmt == "quickdraw-ndjson":
        path = tmp_path / "digits.ndjson"
        write_ndjson(path, ndjson_lines(20))
    else:
        path = tmp_path / f"export.{fmt}"
        np.savez_compressed(tmp_path / "seed.npz", x=bitmaps(50).reshape(50, 28, 28), y=np.arange(50) % 10)
        import_file(app, tmp_path / "seed.npz", "npz")
        export_to(app, fmt, path)
        empty(app)
    truncate(path)
    assert "nothing was imported" in refused(app, path, fmt)


def export_to(app, fmt, path) -> None:
    from webapp.dataset import DatasetExport

    with app.app_context():
        DatasetExport(fmt).write_to(path)


def comparable(path, fmt) -> dict:
    """An export's contents without what must differ between deployments (ids, timestamps)."""
    if fmt == "npz":
        with np.load(path) as arrays:
            return {name: arrays[name].tolist() for name in ("x", "y", "holdout")}
    with zipfile.ZipFile(path) as archive:
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8"))))
        files = [archive.read(line["path"]) for line in manifest]
        for line in manifest:
            for field in ("id", "created_at", "confirmed_at"):
                line.pop(field)
            line["path"] = line["path"].split("/")[0]
        return {"manifest": manifest, "files": files}


@pytest.mark.parametrize("fmt", ["npz", "zip"])
def test_export_import_export_round_trips(app, tmp_path, fmt):
    x = bitmaps(30, seed=5).reshape(30, 28, 28)
    np.savez(tmp_path / "seed.npz", x=x, y=np.arange(30) % 10, holdout=np.arange(30) % 3 == 0)
    import_file(app, tmp_path / "seed.npz", "npz")
    first, second = tmp_path / f"first.{fmt}", tmp_path / f"second.{fmt}"
    export_to(app, fmt, first)
    empty(app)  # a fresh deployment
    result = import_file(app, first, fmt)
    assert (result.imported, result.duplicates) == (30, 0)
    export_to(app, fmt, second)
    assert comparable(first, fmt) == comparable(second, fmt)
    assert comparable(second, fmt) != {} and len(rows_in_order(app)) == 30


def test_a_batch_whose_objects_fail_leaves_neither_rows_nor_objects(app, tmp_path, small_batches, monkeypatch):
    from webapp import storage
    from webapp.errors import ServiceError

    path = tmp_path / "3.npy"
    np.save(path, bitmaps(20))
    sync, calls = storage.sync_filesystem, []

    def failing_sync(folder):
        calls.append(folder)
        if len(calls) == 2:  # the second batch's files are written, then the disk fails
            raise OSError(5, "Input/output error")
        return sync(folder)

    monkeypatch.setattr(storage, "sync_filesystem", failing_sync)
    with pytest.raises(ServiceError) as caught:
        import_file(app, path, "quickdraw-npy")
    assert caught.value.status == 503 and "the 7 drawings of the batches before it" in caught.value.message
    assert drawing_count(app) == 7
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "dataset.import"))
        assert event.detail["imported"] == 7 and "image storage refused" in event.detail["stopped"]
    rows, objects = stored_drawing_keys(app)
    assert rows == objects and len(objects) == 7
    monkeypatch.setattr(storage, "sync_filesystem", sync)
    result = import_file(app, path, "quickdraw-npy")  # run again: the first batch is skipped
    assert (result.imported, result.duplicates, drawing_count(app)) == (13, 7, 20)


def test_a_batch_whose_rows_fail_removes_its_objects(app, tmp_path, small_batches, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from webapp.errors import ServiceError

    path = tmp_path / "3.npy"
    np.save(path, bitmaps(10))
    execute = db.session.execute

    def failing_insert(statement, *args, **kwargs):
        if getattr(statement, "is_insert", False):
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return execute(statement, *args, **kwargs)

    monkeypatch.setattr(db.session, "execute", failing_insert)
    with pytest.raises(ServiceError) as caught:
        import_file(app, path, "quickdraw-npy")
    assert caught.value.code == "database_unavailable"
    assert stored_drawing_keys(app) == (set(), set())


def admin_headers(app, runner, *, role="admin", scope="admin") -> dict:
    from webapp import accounts

    runner.invoke(args=["users", "create", f"u-{role}", "--role", role, "--password", "long enough"])
    with app.test_request_context():
        user = db.session.scalar(select(User).where(User.username == f"u-{role}"))
        _token, secret = accounts.issue_token(user=user, name=f"t-{role}-{scope}", scopes=[scope])
    return {"Authorization": f"Bearer {secret}"}


def test_the_admin_api_imports_a_streamed_upload(app, runner, tmp_path):
    client = app.test_client()
    path = tmp_path / "3.npy"
    np.save(path, bitmaps(9))
    body = path.read_bytes()
    url = f"{IMPORT}?format=quickdraw-npy&label=3"
    assert client.post(url, data=body).status_code == 401
    for role, scope in (("reviewer", "review"), ("admin", "read")):
        response = client.post(url, data=body, headers=admin_headers(app, runner, role=role, scope=scope))
        assert response.status_code == 403 and response.json["code"] == "forbidden"
    assert drawing_count(app) == 0
    headers = admin_headers(app, runner)
    app.config["MAX_CONTENT_LENGTH"] = 1000  # an image's limit: the import has its own, IMPORT_MAX_BYTES
    response = client.post(url, data=body, headers=headers, content_type="application/octet-stream")
    assert response.status_code == 201, response.json
    assert response.json == {"read": 9, "imported": 9, "duplicates": 0, "batches": 1}
    named = client.post(f"{IMPORT}?format=quickdraw-npy&name=cat.npy", data=body, headers=headers)
    assert named.status_code == 400 and named.json["code"] == "invalid_file" and "'cat'" in named.json["error"]
    bad = client.post(f"{IMPORT}?format=quickdraw-npy&label=3", data=body[:-50], headers=headers)
    assert bad.status_code == 400 and bad.json["code"] == "invalid_file"
    unknown = client.post(f"{IMPORT}?format=quickdraw-npy&label_set=no-such-set", data=body, headers=headers)
    assert unknown.status_code == 400 and unknown.json["code"] == "unknown_label_set"
    assert client.post(f"{IMPORT}?format=csv", data=body, headers=headers).json["code"] == "invalid_format"
    assert client.post(url, data=b"", headers=headers).json["code"] == "invalid_file"
    app.config["IMPORT_MAX_BYTES"] = 1000
    too_large = client.post(url, data=body, headers=headers)
    assert too_large.status_code == 413 and too_large.json["code"] == "file_too_large"
    assert drawing_count(app) == 9


def test_the_cli_imports_and_reports(app, runner, tmp_path):
    path = tmp_path / "5.npy"
    np.save(path, bitmaps(4))
    result = runner.invoke(args=["dataset", "import", "--format", "quickdraw-npy", str(path)])
    assert result.exit_code == 0, result.output
    assert "4 drawings imported, 0 duplicates skipped, of 4 in 5.npy" in result.output
    result = runner.invoke(args=["dataset", "import", "--format", "quickdraw-npy", "--label-set", "no-such-set", str(path)])
    assert result.exit_code != 0 and "unknown label set 'no-such-set'" in result.output


def test_rdp_simplification_and_scaling_as_quick_draw_does():
    from webapp.quickdraw import quickdraw_record, simplified_strokes

    noise = np.random.default_rng(1).uniform(-0.3, 0.3, 200)
    noise[[0, -1]] = 0
    wobbly = [np.linspace(100, 500, 200).tolist(), (np.linspace(100, 300, 200) + noise).tolist()]
    corner = [[500, 500, 500], [300, 400, 600]]
    line, bend = simplified_strokes([wobbly, corner])
    # The ink's box (100..500 by 100..600) moved to 0 and fitted into 0..255 keeping its aspect: 255/500.
    assert line == [[0, 204], [0, 102]]  # a wobble under epsilon 2.0 is gone
    assert bend == [[204, 204], [102, 255]]  # the middle point lies on the line: dropped
    jagged = [[0, 10, 20, 30, 40], [0, 30, 0, 30, 0]]
    assert len(simplified_strokes([jagged])[0][0]) == 5  # bends larger than epsilon stay
    from datetime import datetime, timezone

    record = quickdraw_record(word="7", key_id="k", moment=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
                              recognized=False, strokes=[wobbly])
    assert list(record) == ["word", "countrycode", "timestamp", "recognized", "key_id", "drawing"]
    assert record["timestamp"] == "2026-01-02 03:04:05.000000 UTC" and record["countrycode"] == "ZZ"


def test_the_quickdraw_ndjson_export(app, tmp_path):
    lines = ndjson_lines(6)
    path = tmp_path / "mixed.ndjson"
    write_ndjson(path, lines)
    import_file(app, path, "quickdraw-ndjson")
    np.save(tmp_path / "3.npy", bitmaps(2))
    import_file(app, tmp_path / "3.npy", "quickdraw-npy")  # no strokes: left out, and counted
    rows = rows_in_order(app)
    with app.app_context():
        db.session.add(Prediction(drawing_id=rows[0].id, model_name="cnn", model_version=1, label=7, confidence=0.9,
                                  probabilities=[0.1] * 10, latency_ms=1.0))
        db.session.add(Prediction(drawing_id=rows[2].id, model_name="cnn", model_version=1, label=1, confidence=0.9,
                                  probabilities=[0.1] * 10, latency_ms=1.0))
        db.session.commit()
    out = tmp_path / "export.zip"
    export_to(app, "quickdraw-ndjson", out)
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["1.ndjson", "3.ndjson", "7.ndjson", "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
        assert (manifest["confirmed"], manifest["drawings"], manifest["without_strokes"]) == (8, 6, 2)
        sevens = [json.loads(line) for line in archive.read("7.ndjson").splitlines()]
        assert archive.read("3.ndjson") == b""
    assert [record["key_id"] for record in sevens] == [rows[0].id, rows[2].id, rows[4].id]
    assert [record["recognized"] for record in sevens] == [True, False, False]
    for record in sevens:
        assert record["word"] == "7" and len(record["drawing"]) == 2
        coordinates = [value for stroke_ in record["drawing"] for axis in stroke_ for value in axis]
        assert min(coordinates) == 0 and max(coordinates) == 255 and all(type(v) is int for v in coordinates)
        # Each stroke is a straight line: RDP keeps its two ends.
        assert [len(stroke_[0]) for stroke_ in record["drawing"]] == [2, 2]
    # And the export imports again, strokes and all.
    empty(app)
    assert import_file(app, out, "quickdraw-ndjson").imported == 6


def test_a_confirmed_import_may_start_a_run_as_a_confirmation_does(app, tmp_path, monkeypatch):
    from webapp import importing

    calls = []
    monkeypatch.setattr(importing, "maybe_trigger_automatically", lambda label_set_id: calls.append(label_set_id))
    np.save(tmp_path / "4.npy", bitmaps(3))
    import_file(app, tmp_path / "4.npy", "quickdraw-npy", status="pending")
    assert calls == []
    np.save(tmp_path / "5.npy", bitmaps(3, seed=1))
    import_file(app, tmp_path / "5.npy", "quickdraw-npy")
    assert calls == [1]
    import_file(app, tmp_path / "5.npy", "quickdraw-npy")  # nothing new: nothing to train on
    assert calls == [1]


def test_ndjson_without_a_final_newline_is_whole_but_a_line_cut_short_is_not(app, tmp_path, monkeypatch):
    from webapp import quickdraw

    path = tmp_path / "digits.ndjson"
    write_ndjson(path, ndjson_lines(3))
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert import_file(app, path, "quickdraw-ndjson").imported == 3
    empty(app)
    path.write_bytes(path.read_bytes()[:-3])
    assert "line 3 is not JSON" in refused(app, path, "quickdraw-ndjson")
    monkeypatch.setattr(quickdraw, "MAX_LINE_BYTES", 100)
    assert "line 1 is longer than 100 bytes" in refused(app, path, "quickdraw-ndjson")


def test_an_import_overtaken_by_another_of_the_same_drawings_stores_them_once(app, tmp_path, monkeypatch):
    """Two imports of one file at once: the one that commits second finds the drawings taken at its
    last look, removes the objects it wrote and counts them as duplicates."""
    from webapp import importing

    path = tmp_path / "3.npy"
    np.save(path, bitmaps(20))
    real_write = importing._Batcher._write
    other = []

    def write(self, objects):
        written = real_write(self, objects)
        if not other:  # the first batch's objects are written: the other import runs to its end now
            other.append(None)
            thread = threading.Thread(target=lambda: other.append(import_file(app, path, "quickdraw-npy")))
            thread.start()
            thread.join()
        return written

    monkeypatch.setattr(importing._Batcher, "_write", write)
    result = import_file(app, path, "quickdraw-npy")
    assert other[1].imported == 20
    assert (result.imported, result.duplicates) == (0, 20)
    assert drawing_count(app) == 20
    rows, objects = stored_drawing_keys(app)
    assert rows == objects and len(objects) == 20
