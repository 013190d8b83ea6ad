"""Label sets: creating and closing them, labels by name or index, cold start, and isolation from digits."""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import pytest
from sqlalchemy import func, select

from tests.webapp.test_retraining import queued  # noqa: F401
from webapp.extensions import db
from webapp.models import AuditEvent, Drawing, LabelSet, ModelVersion, TrainingRun

SHAPES = ("circle", "square", "triangle")


def shape_png(shape: str, seed: int) -> str:
    """A jittered outline of ``shape``, drawn as the canvas draws (dark pen on white), as a data URL."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (280, 280), "white")
    pen = ImageDraw.Draw(image)
    cx, cy = 140 + rng.integers(-20, 21, 2)
    radius = int(rng.integers(70, 100))
    turn = rng.uniform(-0.3, 0.3)
    corners = {"circle": 48, "square": 4, "triangle": 3}[shape]
    offset = math.pi / 4 if shape == "square" else -math.pi / 2
    points = [(cx + radius * math.cos(offset + turn + 2 * math.pi * k / corners),
               cy + radius * math.sin(offset + turn + 2 * math.pi * k / corners)) for k in range(corners + 1)]
    pen.line(points, fill="black", width=int(rng.integers(12, 20)), joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def shapes(app, runner):
    result = runner.invoke(args=["label-sets", "create", "shapes", "--classes", ",".join(SHAPES),
                                 "--translation", "ja=まる,しかく,さんかく"])
    assert result.exit_code == 0, result.output
    return "shapes"


def contribute(client, label_set: str, per_class: int, *, seed: int = 0, by_name: bool = True) -> list[str]:
    ids = []
    for index in range(per_class):
        for label, shape in enumerate(SHAPES):
            response = client.post("/api/v1/drawings", json={
                "image": shape_png(shape, seed * 1000 + index * 10 + label), "label_set": label_set,
                "label": shape if by_name else label})
            assert response.status_code == 201, response.json
            ids.append(response.json["id"])
    return ids


def test_cli_creates_lists_and_closes_a_set(app, runner, shapes, client):
    listed = runner.invoke(args=["label-sets", "list"])
    assert listed.exit_code == 0 and "digits  open" in listed.output and "shapes  open" in listed.output
    assert "circle,square,triangle" in listed.output and "no model" in listed.output
    again = runner.invoke(args=["label-sets", "create", "shapes", "--classes", "a,b"])
    assert again.exit_code != 0 and "already exists" in again.output
    for args in (["Bad Slug", "--classes", "a,b"], ["one", "--classes", "only"], ["dup", "--classes", "a,a"],
                 ["tr", "--classes", "a,b", "--translation", "ja=x"]):
        refused = runner.invoke(args=["label-sets", "create", *args])
        assert refused.exit_code != 0, args
    assert runner.invoke(args=["label-sets", "close", "digits"]).exit_code != 0
    assert runner.invoke(args=["label-sets", "close", "nope"]).exit_code != 0
    closed = runner.invoke(args=["label-sets", "close", "shapes"])
    assert closed.exit_code == 0 and "closed" in closed.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LabelSet)) == 2
        actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert actions == ["label_set.create", "label_set.close"]
    # A closed set takes no contributions: 409, nothing stored; the page says so.
    refused = client.post("/api/v1/drawings", json={"image": shape_png("circle", 1), "label_set": "shapes",
                                                    "label": "circle"})
    assert refused.status_code == 409 and refused.json["code"] == "label_set_closed"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Drawing)) == 0
    page = client.get("/sets/shapes/contribute")
    assert page.status_code == 200 and 'id="set-closed"' in page.text


def test_labels_by_name_or_index_are_checked_against_the_set(app, client, shapes):
    image = shape_png("square", 3)
    by_name = client.post("/api/v1/drawings", json={"image": image, "label_set": "shapes", "label": "square"})
    assert by_name.status_code == 201
    assert by_name.json["label"] == 1 and by_name.json["label_set"] == "shapes" and by_name.json["class_name"] == "square"
    by_index = client.post("/api/v1/drawings", json={"image": image, "label_set": "shapes", "label": 2})
    assert by_index.status_code == 201 and by_index.json["class_name"] == "triangle"
    multipart = client.post("/api/v1/drawings", data={"image": (io.BytesIO(base64.b64decode(image.split(",")[1])),
                                                                "s.png"), "label_set": "shapes", "label": "0"})
    assert multipart.status_code == 201 and multipart.json["class_name"] == "circle"
    for label in (3, -1, "cat", "7", True, 1.0, None, "Square"):
        response = client.post("/api/v1/drawings", json={"image": image, "label_set": "shapes", "label": label})
        assert response.status_code == 400 and response.json["code"] == "invalid_label", label
        assert "circle, square, triangle" in response.json["error"]
    for label_set in ("nope", 3, "", "../digits"):
        response = client.post("/api/v1/drawings", json={"image": image, "label_set": label_set, "label": 1})
        assert response.status_code == 400 and response.json["code"] == "invalid_label_set", label_set
    # Digits, named or not, as before; a digit's name is the digit.
    digits = client.post("/api/v1/drawings", json={"image": image, "label_set": "digits", "label": "7"})
    assert digits.status_code == 201 and digits.json["label_set"] == "digits" and digits.json["class_name"] == "7"
    got = client.get(f"/api/v1/drawings/{by_name.json['id']}").json
    assert got["label_set"] == "shapes" and got["class_name"] == "square"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Drawing)) == 4


def test_cold_start_409_then_predictions_after_the_first_run(app, client, shapes, admin_token, queued):
    from workers.fine_tuning import execute_run

    app.config.update(AUTO_CONFIRM=True, MIN_PER_CLASS=12, RETRAIN_EVERY=100)
    sets = {entry["slug"]: entry for entry in client.get("/api/v1/label-sets").json["label_sets"]}
    assert sets["digits"]["models"] == {"fnn": True, "cnn": True}
    assert sets["shapes"]["models"] == {"fnn": False, "cnn": False} and not sets["shapes"]["closed"]
    assert [c["name"] for c in sets["shapes"]["classes"]] == list(SHAPES)
    japanese = client.get("/api/v1/label-sets", headers={"Accept-Language": "ja"}).json["label_sets"]
    assert [c["display_name"] for c in japanese[1]["classes"]] == ["まる", "しかく", "さんかく"]

    before = client.post("/api/v1/predictions", json={"image": shape_png("circle", 5), "label_set": "shapes"})
    assert before.status_code == 409 and before.json["code"] == "no_model"
    page = client.get("/sets/shapes/draw")
    assert page.status_code == 200 and 'id="no-model"' in page.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Drawing)) == 0  # the 409 stored nothing

    contribute(client, "shapes", 16, seed=1)  # the first of each five is held out: 12 per class train
    # Every class has MIN_PER_CLASS confirmed training drawings: the first run was asked for by itself.
    assert len(queued) == 1
    with app.app_context():
        run = db.session.scalar(select(TrainingRun))
        assert run.trigger == "auto" and run.label_set_id != 1 and run.lock.startswith("training:")
        result = execute_run(run.id)
    for name in ("fnn", "cnn"):
        assert result[name]["decision"] == "promoted", result[name]
        assert result[name]["version"] == 1 and result[name]["parent"] is None
        assert result[name]["checks"]["holdout"]["p_above_chance"] < 0.01
    after = client.post("/api/v1/predictions", json={"image": shape_png("triangle", 7), "label_set": "shapes"})
    assert after.status_code == 200 and after.json["label_set"] == "shapes"
    for answer in after.json["predictions"].values():
        assert len(answer["probabilities"]) == 3 and answer["class_name"] in SHAPES
    # The prediction is rated in the set's classes.
    rated = client.post(f"/api/v1/predictions/{after.json['id']}/feedback", json={"label": "triangle"})
    assert rated.status_code == 201 and rated.json["label"] == 2
    bad = client.post("/api/v1/predictions", json={"image": shape_png("triangle", 8), "label_set": "shapes"}).json
    assert client.post(f"/api/v1/predictions/{bad['id']}/feedback", json={"label": 3}).status_code == 400
    # Its versions live under the set's own prefix; digits' registry is untouched.
    with app.app_context():
        rows = db.session.scalars(select(ModelVersion).where(ModelVersion.label_set_id == run.label_set_id)).all()
        assert sorted((row.name, row.status) for row in rows) == [("cnn", "active"), ("fnn", "active")]
        assert all(row.object_prefix.startswith(f"models/sets/shapes/{row.name}/v1-") for row in rows)
        digits = db.session.scalars(select(ModelVersion).where(ModelVersion.label_set_id == 1)).all()
        assert sorted((row.name, row.version, row.status) for row in digits) == [("cnn", 1, "active"),
                                                                                ("fnn", 1, "active")]
    assert client.get("/api/v1/models").json["label_set"] == "digits"
    assert {m["name"]: [v["version"] for v in m["versions"]] for m in client.get("/api/v1/models").json["models"]} \
        == {"cnn": [1], "fnn": [1]}
    shapes_models = client.get("/api/v1/models?label_set=shapes").json
    assert all(v["metrics"]["holdout_size"] > 0 for m in shapes_models["models"] for v in m["versions"])
    assert 'id="no-model"' not in client.get("/sets/shapes/draw").text
    sets = {entry["slug"]: entry for entry in client.get("/api/v1/label-sets").json["label_sets"]}
    assert sets["shapes"]["models"] == {"fnn": True, "cnn": True}


def test_a_set_never_shows_in_or_trains_another(app, client, shapes, admin_token, queued, canvas_drawings):
    from workers.fine_tuning import execute_run

    app.config.update(AUTO_CONFIRM=True, MIN_PER_CLASS=10**6, RETRAIN_EVERY=0, FINETUNE_EPOCHS=1,
                      FINETUNE_MNIST_MINIMUM=500, CONTRIBUTOR_SHARE=1.0)
    shape_ids = contribute(client, "shapes", 4, by_name=False)
    digit_ids = []
    for drawing in canvas_drawings:  # 22 of them
        saved = client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": int(drawing.label)})
        assert saved.status_code == 201, saved.json
        digit_ids.append(saved.json["id"])
    # Digits' views (the defaults) hold digits only; the set's hold the set's only.
    needs = client.get("/api/v1/dataset/needs").json
    assert needs["label_set"] == "digits" and needs["total"] == len(digit_ids) == 22 and len(needs["digits"]) == 10
    set_needs = client.get("/api/v1/dataset/needs?label_set=shapes").json
    assert set_needs["total"] == 12 and [d["name"] for d in set_needs["digits"]] == list(SHAPES)
    assert set_needs["name"] in SHAPES
    assert client.get("/api/v1/stats").json["drawings"]["total"] == 22
    assert client.get("/api/v1/stats?label_set=shapes").json["drawings"]["total"] == 12
    listed = client.get("/api/v1/drawings?label_set=shapes&page=1", headers=admin_token).json
    assert sorted(item["id"] for item in listed["items"]) == sorted(shape_ids)
    listed = client.get("/api/v1/drawings?label_set=digits", headers=admin_token).json
    assert sorted(item["id"] for item in listed["items"]) == sorted(digit_ids)
    assert client.get("/api/v1/drawings?label_set=shapes&label=3", headers=admin_token).status_code == 400
    # A digits run takes digits' drawings only, and the set's drawings stay unbatched.
    run = client.post("/api/v1/training-runs", headers=admin_token).json
    assert run["label_set"] == "digits"
    # One live run per set: the set's own run starts beside it.
    shapes_run = client.post("/api/v1/training-runs", headers=admin_token, json={"label_set": "shapes"}).json
    assert shapes_run["created"] and shapes_run["id"] != run["id"] and shapes_run["label_set"] == "shapes"
    with app.app_context():
        result = execute_run(run["id"])
        trained = [drawing_id for drawing_id in digit_ids if not db.session.get(Drawing, drawing_id).holdout]
        assert result["cnn"]["new_samples"] == len(trained) > 0
        assert all(db.session.get(Drawing, drawing_id).batched_at is not None for drawing_id in trained)
        assert all(db.session.get(Drawing, drawing_id).batched_at is None for drawing_id in shape_ids)
        digits_versions = db.session.scalars(select(ModelVersion).where(ModelVersion.label_set_id == 1)).all()
        assert {row.version for row in digits_versions} == {1, 2}
        assert db.session.scalar(select(func.count()).select_from(ModelVersion)
                                 .where(ModelVersion.label_set_id != 1)) == 0
    runs = client.get("/api/v1/training-runs?label_set=shapes", headers=admin_token).json["items"]
    assert [item["id"] for item in runs] == [shapes_run["id"]]


def test_set_pages(app, client, shapes):
    page = client.get("/sets/shapes/contribute")
    assert page.status_code == 200
    for index, shape in enumerate(SHAPES):
        assert f'id="label-{index}" value="{index}"' in page.text and f">{shape}</label>" in page.text
    assert 'id="label-3"' not in page.text and 'data-label-set="shapes"' in page.text
    japanese = client.get("/sets/shapes/contribute", headers={"Accept-Language": "ja"})
    assert ">さんかく</label>" in japanese.text
    assert client.get("/sets/shapes/draw").status_code == 200
    missing = client.get("/sets/nope/draw")
    assert missing.status_code == 404 and "text/html" in missing.content_type
    assert client.get("/sets/digits/contribute").headers["Location"].endswith("/contribute")
    # The digits pages are unchanged: ten digits, no set.
    digits = client.get("/contribute").text
    assert 'id="label-9" value="9"' in digits and "data-label-set" not in digits


def test_admins_create_and_close_sets_from_their_page(app, client, runner, shapes):
    from tests.webapp.test_roles import PASSWORD, csrf_from, sign_in

    runner.invoke(args=["users", "create-admin", "ada", "--password", PASSWORD])
    sign_in(client, "ada")
    page = client.get("/admin/label-sets")
    assert page.status_code == 200 and 'data-label-set="shapes"' in page.text
    csrf = csrf_from(page.text)
    created = client.post("/admin/label-sets", data={"csrf_token": csrf, "slug": "animals", "name": "Animals",
                                                     "classes": "cat, giraffe,sheep,bat,octopus,camel"})
    assert created.status_code == 302
    for data in ({"slug": "Bad Slug", "classes": "a,b"}, {"slug": "one", "classes": "a"},
                 {"slug": "animals", "classes": "a,b"}):
        refused = client.post("/admin/label-sets", data={"csrf_token": csrf, **data})
        assert refused.status_code in (400, 409), data
    assert client.post("/admin/label-sets", data={"slug": "nocsrf", "classes": "a,b"}).status_code == 400
    assert client.post("/admin/label-sets/animals/close", data={"csrf_token": csrf}).status_code == 302
    assert client.post("/admin/label-sets/digits/close", data={"csrf_token": csrf}).status_code == 409
    assert client.post("/admin/label-sets/nope/close", data={"csrf_token": csrf}).status_code == 404
    with app.app_context():
        animals = db.session.scalar(select(LabelSet).where(LabelSet.slug == "animals"))
        assert animals.class_names == ["cat", "giraffe", "sheep", "bat", "octopus", "camel"] and animals.closed_at
        events = db.session.execute(select(AuditEvent.action, AuditEvent.actor, AuditEvent.target)
                                    .where(AuditEvent.target == "animals").order_by(AuditEvent.id)).all()
        assert [tuple(event) for event in events] == [("label_set.create", "ada", "animals"),
                                                      ("label_set.close", "ada", "animals")]
        assert db.session.scalar(select(func.count()).select_from(LabelSet).where(LabelSet.slug == "nocsrf")) == 0
    # The staff pages take the set: its dashboard, and the review queue and dataset filtered to it.
    contribute(client, "shapes", 1)
    dashboard = client.get("/admin/?label_set=shapes")
    assert dashboard.status_code == 200 and "<th scope=\"row\">triangle</th>" in dashboard.text
    review = client.get("/admin/review?label_set=shapes")
    assert review.status_code == 200 and review.text.count('class="review-label-value">') == 3
    assert client.get("/admin/review?label_set=digits").text.count('class="review-label-value">') == 0
    assert client.get("/admin/dataset?label_set=nope").status_code == 400
    export = client.get("/api/v1/dataset/export?format=npz&label_set=shapes", headers={"X-CSRFToken": csrf})
    assert export.status_code == 200 and export.headers["X-Dataset-Rows"] == "0"  # none confirmed yet
    export.close()  # a streamed export holds its snapshot (and an app context) until closed


def test_my_drawings_names_a_sets_classes(app, client, shapes):
    """A contributor's page shows a shape's class name in their language, and digits as digits."""
    contribute(client, "shapes", 1)
    assert client.post("/api/v1/drawings", json={"image": shape_png("circle", 99), "label": 7}).status_code == 201
    page = client.get("/my-drawings")
    labels = re.findall(r"<strong data-label>([^<]*)</strong>", page.text)
    assert sorted(labels) == sorted([*SHAPES, "7"])
    japanese = client.get("/my-drawings", headers={"Accept-Language": "ja"})
    assert "<strong data-label>さんかく</strong>" in japanese.text
