"""The JSON API on SQLite and PostgreSQL: predictions, feedback, contributions, listings, errors."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Drawing, ModelVersion
from webapp.storage import get_store


def png_bytes(image: Image.Image, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def counts(app) -> tuple[int, int]:
    """(drawing rows, drawing objects in the store)."""
    with app.app_context():
        rows = db.session.scalar(select(func.count()).select_from(Drawing))
        objects = sum(1 for _ in get_store().list("drawings/"))
    return rows, objects


def keys_match_rows(app) -> bool:
    with app.app_context():
        keys = {row.object_key for row in db.session.scalars(select(Drawing))}
        return keys == {obj.key for obj in get_store().list("drawings/")}


@pytest.fixture(autouse=True)
def empty_store(object_root):
    # Each test starts with no drawing objects, so orphans are attributable to it.
    import shutil

    shutil.rmtree(object_root / "drawings", ignore_errors=True)


def test_prediction_answers_both_models_and_stores_the_drawing(app, client, canvas_drawings):
    drawing = canvas_drawings[0]
    response = client.post("/api/v1/predictions", json={"image": drawing.data_url})
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body["predictions"]) == {"fnn", "cnn"}
    for answer in body["predictions"].values():
        assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-3
        assert answer["label"] == int(np.argmax(answer["probabilities"]))
        assert answer["confidence"] == max(answer["probabilities"])
        assert answer["model_version"] == 1
    preview = Image.open(io.BytesIO(base64.b64decode(body["preview"].split(",", 1)[1])))
    assert preview.size == (28, 28)
    with app.app_context():
        row = db.session.get(Drawing, body["id"])
        assert row.source == "prediction" and row.label is None and row.status == "pending"
        assert np.array_equal(np.frombuffer(row.pixels, np.uint8).reshape(28, 28), np.asarray(preview))
        original = base64.b64decode(drawing.data_url.split(",", 1)[1])
        assert get_store().get(row.object_key) == original  # stored as uploaded
        assert {p.model_name: p.label for p in row.predictions} == {
            name: answer["label"] for name, answer in body["predictions"].items()}
    assert keys_match_rows(app)


def test_canvas_drawings_are_mostly_read_right(client, canvas_drawings):
    right = 0
    for drawing in canvas_drawings:
        body = client.post("/api/v1/predictions", json={"image": drawing.data_url}).json
        right += body["predictions"]["cnn"]["label"] == drawing.label
    # The tiny test CNN (two short epochs on 3,000 digits) still reads most canvas drawings.
    assert right / len(canvas_drawings) > 0.6


def test_multipart_upload_is_accepted(client, canvas_drawings):
    raw = base64.b64decode(canvas_drawings[0].data_url.split(",", 1)[1])
    response = client.post("/api/v1/predictions", data={"image": (io.BytesIO(raw), "digit.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    response = client.post("/api/v1/drawings", data={"image": (io.BytesIO(raw), "d.png"), "label": "4"},
                           content_type="multipart/form-data")
    assert response.status_code == 201 and response.json["label"] == 4


def test_feedback_labels_the_drawing_and_scores_each_model(app, client, canvas_drawings):
    drawing = canvas_drawings[1]
    predicted = client.post("/api/v1/predictions", json={"image": drawing.data_url}).json
    response = client.post(f"/api/v1/predictions/{predicted['id']}/feedback", json={"label": drawing.label})
    assert response.status_code == 201
    assert response.json["correct"] == {name: answer["label"] == drawing.label
                                        for name, answer in predicted["predictions"].items()}
    with app.app_context():
        row = db.session.get(Drawing, predicted["id"])
        assert (row.source, row.label, row.status) == ("feedback", drawing.label, "pending")
        assert row.rating.label == drawing.label
    again = client.post(f"/api/v1/predictions/{predicted['id']}/feedback", json={"label": 3})
    assert again.status_code == 409 and again.json["code"] == "already_rated"
    stats = client.get("/api/v1/stats").json
    assert stats["accuracy"]["cnn"]["rated"] == 1
    assert stats["accuracy"]["cnn"]["correct"] == int(response.json["correct"]["cnn"])
    assert stats["drawings"]["by_source"] == {"feedback": 1}


def test_feedback_for_unknown_or_contributed_drawings_is_404(client, canvas_drawings):
    assert client.post("/api/v1/predictions/nope/feedback", json={"label": 1}).status_code == 404
    saved = client.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url, "label": 1}).json
    response = client.post(f"/api/v1/predictions/{saved['id']}/feedback", json={"label": 1})
    assert response.status_code == 404 and response.json["code"] == "not_found"


@pytest.mark.parametrize("label", ["10", -1, 10, "٣", True, 3.0, None, [3], "7 "])
def test_bad_labels_are_400_and_store_nothing(app, client, canvas_drawings, label):
    response = client.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url, "label": label})
    assert response.status_code == 400 and response.json["code"] == "invalid_label"
    predicted = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url}).json
    response = client.post(f"/api/v1/predictions/{predicted['id']}/feedback", json={"label": label})
    assert response.status_code == 400
    assert counts(app) == (1, 1)  # only the prediction's drawing


def test_contributions_are_counted_per_visitor(app, client, canvas_drawings):
    first = client.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url, "label": 7})
    assert first.status_code == 201
    assert first.json["label"] == 7 and first.json["status"] == "pending" and first.json["client_contributions"] == 1
    assert first.headers["Location"].endswith(first.json["id"])
    second = client.post("/api/v1/drawings", json={"image": canvas_drawings[1].data_url, "label": 2})
    assert second.json["client_contributions"] == 2
    assert client.get("/api/v1/me").json["contributions"] == 2
    stranger = app.test_client()
    assert stranger.get("/api/v1/me").json["contributions"] == 0
    assert counts(app) == (2, 2) and keys_match_rows(app)


def test_drawings_are_listed_filtered_and_paged(app, client, canvas_drawings):
    app.config["PAGE_SIZE"] = 2
    for index, drawing in enumerate(canvas_drawings[:5]):
        client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": index % 2})
    listing = client.get("/api/v1/drawings").json
    assert listing["total"] == 5 and listing["pages"] == 3 and len(listing["items"]) == 2
    assert client.get("/api/v1/drawings?page=3").json["items"].__len__() == 1
    zeros = client.get("/api/v1/drawings?label=0").json
    assert zeros["total"] == 3 and all(item["label"] == 0 for item in zeros["items"])
    assert client.get("/api/v1/drawings?status=confirmed").json["total"] == 0
    assert client.get("/api/v1/drawings?source=contribution&status=pending").json["total"] == 5
    for query in ("label=x", "status=maybe", "source=x", "page=0", "page=-1", "page=abc"):
        response = client.get(f"/api/v1/drawings?{query}")
        assert response.status_code == 400 and "error" in response.json, query


def test_one_drawing_and_its_original_image(client, canvas_drawings):
    drawing = canvas_drawings[3]
    saved = client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": drawing.label}).json
    meta = client.get(f"/api/v1/drawings/{saved['id']}").json
    assert meta["label"] == drawing.label and meta["source"] == "contribution"
    image = client.get(meta["image_url"])
    assert image.status_code == 200 and image.mimetype == meta["content_type"]
    assert image.data == base64.b64decode(drawing.data_url.split(",", 1)[1])
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/api/v1/drawings/does-not-exist").status_code == 404
    assert client.get("/api/v1/drawings/" + "x" * 300).status_code == 404


def test_png_with_a_script_trailer_is_served_as_png(client):
    image = Image.new("RGB", (100, 100), "white")
    image.paste((0, 0, 0), (45, 20, 55, 80))
    payload = png_bytes(image) + b"<script>alert(1)</script>"
    saved = client.post("/api/v1/drawings", json={"image": data_url(payload), "label": 1})
    assert saved.status_code == 201
    served = client.get(f"/api/v1/drawings/{saved.json['id']}/image")
    assert served.mimetype == "image/png" and served.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("body, status, code", [
    ("not json", 400, "invalid_json"),
    ("[1, 2]", 400, "invalid_json"),
    ('{"image": 5}', 400, "invalid_image"),
    ('{"picture": "x"}', 400, "missing_image"),
    ('{"image": "data:image/png;base64,@@@@"}', 400, "invalid_encoding"),
    ('{"image": "data:text/html;base64,PGgxPg=="}', 415, "unsupported_image"),
    ('{"image": "aGVsbG8gd29ybGQh"}', 415, "unsupported_image"),
])
def test_bad_bodies_are_4xx_json_and_store_nothing(app, client, body, status, code):
    for path in ("/api/v1/predictions", "/api/v1/drawings"):
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == status, (path, response.json)
        assert response.json["code"] in (code, "invalid_label") and response.json["error"]
    assert counts(app) == (0, 0)


def test_empty_canvas_is_422(app, client):
    blank = data_url(png_bytes(Image.new("RGBA", (280, 280), (0, 0, 0, 0))))
    response = client.post("/api/v1/predictions", json={"image": blank})
    assert response.status_code == 422 and response.json["code"] == "empty_drawing"
    assert counts(app) == (0, 0)


def test_oversized_requests_and_bombs_are_413(app, client):
    huge = "data:image/png;base64," + "A" * (app.config["MAX_CONTENT_LENGTH"] + 10)
    response = client.post("/api/v1/predictions", data=json.dumps({"image": huge}), content_type="application/json")
    assert response.status_code == 413 and response.json["code"] == "too_large"
    bomb = data_url(png_bytes(Image.new("L", (10_000, 10_000), 0)))
    response = client.post("/api/v1/drawings", json={"image": bomb, "label": 1})
    assert response.status_code == 413 and response.json["code"] == "image_too_large"
    assert counts(app) == (0, 0)


def test_unknown_api_paths_and_methods_are_json(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json["code"] == "not_found"
    response = client.delete("/api/v1/drawings")
    assert response.status_code == 405 and response.json["error"]


def test_models_endpoint_lists_versions(client):
    body = client.get("/api/v1/models").json
    names = {model["name"]: model for model in body["models"]}
    assert set(names) == {"fnn", "cnn"}
    version = names["cnn"]["versions"][0]
    assert version["version"] == 1 and version["active"] and version["status"] == "active"
    assert 0.6 < version["metrics"]["mnist_test_accuracy"] <= 1


def test_a_newly_activated_version_is_served_without_a_restart(app, client, canvas_drawings, tiny_models):
    from training.versions import load
    from webapp.cli import import_version

    before = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url}).json
    assert before["predictions"]["cnn"]["model_version"] == 1
    with app.app_context():
        candidate = import_version(load(tiny_models[0], "cnn"), activate=False)
        current = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "cnn", ModelVersion.status == "active"))
        current.status = "retired"
        db.session.flush()
        candidate.status = "active"
        db.session.commit()
    after = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url}).json
    assert after["predictions"]["cnn"]["model_version"] == 2
    assert after["predictions"]["fnn"]["model_version"] == 1


def test_only_one_active_version_per_network(app):
    from sqlalchemy.exc import IntegrityError

    with app.app_context():
        row = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "fnn"))
        db.session.add(ModelVersion(name="fnn", version=99, status="active", object_prefix="x/",
                                    onnx_sha256=row.onnx_sha256))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_a_version_failing_its_checksum_is_never_served(app, client, canvas_drawings):
    client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url})
    with app.app_context():
        current = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "cnn", ModelVersion.status == "active"))
        bad = ModelVersion(name="cnn", version=2, status="candidate", object_prefix=current.object_prefix,
                           onnx_sha256="0" * 64)
        db.session.add(bad)
        current.status = "retired"
        db.session.flush()
        bad.status = "active"
        db.session.commit()
    response = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url})
    assert response.status_code == 200
    assert response.json["predictions"]["cnn"]["model_version"] == 1  # the old snapshot stays
    health = client.get("/healthz")
    assert "checksum" in json.dumps(health.json)


def test_activating_a_version_whose_artifact_fails_its_checksum_is_refused(app, client, admin_token):
    with app.app_context():
        current = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "cnn", ModelVersion.status == "active"))
        db.session.add(ModelVersion(name="cnn", version=2, status="candidate", object_prefix=current.object_prefix,
                                    onnx_sha256="0" * 64))
        db.session.add(ModelVersion(name="cnn", version=3, status="candidate", object_prefix="models/cnn/missing/",
                                    onnx_sha256=current.onnx_sha256))
        db.session.commit()
    for version, words in ((2, "checksum"), (3, "cannot be read")):
        response = client.post(f"/api/v1/models/cnn/versions/{version}/activate", headers=admin_token)
        assert response.status_code == 409 and words in response.json["error"], response.json
    with app.app_context():
        active = db.session.scalars(select(ModelVersion.version).where(ModelVersion.name == "cnn",
                                                                        ModelVersion.status == "active")).all()
        assert active == [1]


def test_storage_failure_during_a_save_is_503_and_writes_no_row(app, client, canvas_drawings, monkeypatch):
    from webapp.storage import StorageUnavailable

    store = app.extensions["inkling.store"]

    def broken_put(*args, **kwargs):
        raise StorageUnavailable("disk on fire")

    monkeypatch.setattr(store, "put", broken_put)
    response = client.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url, "label": 3})
    assert response.status_code == 503 and response.json["code"] == "storage_unavailable"
    # A prediction still answers; it is not stored, so it has no id to rate.
    response = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url})
    assert response.status_code == 200 and response.json["id"] is None
    assert set(response.json["predictions"]) == {"fnn", "cnn"}
    assert counts(app) == (0, 0)


def test_database_failure_after_the_object_is_written_removes_the_object(app, client, canvas_drawings, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def failing_commit():
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    with app.app_context():
        monkeypatch.setattr(db.session, "commit", failing_commit)
        response = client.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url, "label": 3})
    assert response.status_code == 503 and response.json["code"] == "database_unavailable"
    monkeypatch.undo()
    assert counts(app) == (0, 0)


def test_healthz_reports_each_dependency(app, client, tmp_path):
    healthy = client.get("/healthz")
    assert healthy.status_code == 200
    assert healthy.json["checks"]["models"]["versions"] == {"fnn": 1, "cnn": 1}
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    app.extensions["inkling.store"].root = blocker / "objects"
    broken = client.get("/healthz")
    assert broken.status_code == 503 and broken.json["checks"]["storage"]["ok"] is False


def test_no_models_means_503_not_500(app, client, canvas_drawings):
    with app.app_context():
        db.session.execute(ModelVersion.__table__.delete())
        db.session.commit()
    fresh = app.extensions["inkling.registry"].__class__(app.extensions["inkling.store"], refresh_seconds=0)
    app.extensions["inkling.registry"] = fresh
    response = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url})
    assert response.status_code == 503 and response.json["code"] == "models_unavailable"
    assert client.get("/healthz").status_code == 503
    assert counts(app) == (0, 0)


def test_write_behind_stores_predictions_after_answering(app, client, canvas_drawings, monkeypatch):
    app.config["PREDICTION_WRITE_BEHIND"] = True
    writer = app.extensions["inkling.writer"]
    answered = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url}).json
    writer.flush()
    with app.app_context():
        row = db.session.get(Drawing, answered["id"])
        assert row is not None and len(row.predictions) == 2
    assert client.post(f"/api/v1/predictions/{answered['id']}/feedback", json={"label": 1}).status_code == 201

    from webapp.storage import StorageUnavailable

    def broken_put(*args, **kwargs):
        raise StorageUnavailable("gone")

    monkeypatch.setattr(app.extensions["inkling.store"], "put", broken_put)
    lost = client.post("/api/v1/predictions", json={"image": canvas_drawings[1].data_url}).json
    writer.flush()
    # The failure closes the writer for a few seconds: answers go out without an id.
    after = client.post("/api/v1/predictions", json={"image": canvas_drawings[2].data_url})
    assert after.status_code == 200 and after.json["id"] is None
    with app.app_context():
        assert db.session.get(Drawing, lost["id"]) is None
    assert keys_match_rows(app)


def test_write_behind_gathers_predictions_into_one_batch(app, client, canvas_drawings, monkeypatch):
    """Predictions arriving within the writer's linger are stored with one commit, not one each."""
    from webapp import writer as write_behind

    app.config["PREDICTION_WRITE_BEHIND"] = True
    writer = app.extensions["inkling.writer"] = write_behind.PredictionWriter(linger=2.0)
    sizes = []
    store_batch = write_behind.store_predictions
    monkeypatch.setattr(write_behind, "store_predictions", lambda batch: (sizes.append(len(batch)), store_batch(batch)))
    ids = [client.post("/api/v1/predictions", json={"image": d.data_url}).json["id"] for d in canvas_drawings[:5]]
    writer.flush()
    assert sizes == [5] and counts(app) == (5, 5) and keys_match_rows(app)
    with app.app_context():
        assert all(db.session.get(Drawing, drawing_id) is not None for drawing_id in ids)


def test_rating_a_prediction_before_it_is_stored_waits_for_it(app, client, canvas_drawings):
    from webapp.writer import PredictionWriter

    app.config["PREDICTION_WRITE_BEHIND"] = True
    app.extensions["inkling.writer"] = PredictionWriter(linger=2.0)
    answered = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url}).json
    with app.app_context():
        assert db.session.get(Drawing, answered["id"]) is None  # still with the writer
    rated = client.post(f"/api/v1/predictions/{answered['id']}/feedback", json={"label": 3})
    assert rated.status_code == 201 and rated.json["label"] == 3
    with app.app_context():
        assert db.session.get(Drawing, answered["id"]).source == "feedback"
    # An id no writer holds is still unknown at once.
    assert client.post("/api/v1/predictions/0123/feedback", json={"label": 3}).status_code == 404


def test_write_behind_stores_a_burst_in_batches_and_undoes_a_failed_batch(app, client, canvas_drawings, monkeypatch):
    """Under load the writer commits many predictions at once; a failed commit leaves no object."""
    import threading

    app.config["PREDICTION_WRITE_BEHIND"] = True
    writer = app.extensions["inkling.writer"]
    ids = []

    def burst(count):
        local = app.test_client()
        for drawing in canvas_drawings[:count]:
            ids.append(local.post("/api/v1/predictions", json={"image": drawing.data_url}).json["id"])

    threads = [threading.Thread(target=burst, args=(10,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush()
    assert len(ids) == 40 and None not in ids
    assert counts(app) == (40, 40) and keys_match_rows(app)

    from sqlalchemy.exc import OperationalError

    def failing_commit():
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(db.session, "commit", failing_commit)
    lost = [client.post("/api/v1/predictions", json={"image": d.data_url}).json["id"] for d in canvas_drawings[:3]]
    writer.flush()
    monkeypatch.undo()
    assert counts(app) == (40, 40) and keys_match_rows(app)
    with app.app_context():
        assert all(db.session.get(Drawing, drawing_id) is None for drawing_id in lost if drawing_id)

