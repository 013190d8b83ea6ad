"""Privacy on SQLite and PostgreSQL: a visitor's own drawings listed and deleted (gone from the store,
the database, exports and runs; audited), and the dataset private to its owners and reviewers."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from webapp.extensions import db
from webapp.models import AuditEvent, Drawing

from .test_admin import csrf_from, log_in
from .test_retention import PASSWORD, contribute, predict, present

# ---- a visitor's own drawings -------------------------------------------------------------------

def test_my_drawings_lists_only_the_visitors_own_with_their_status(app, client, canvas_drawings):
    mine = contribute(client, canvas_drawings[0])
    unrated = predict(client, canvas_drawings[1])
    stranger = app.test_client()
    theirs = contribute(stranger, canvas_drawings[2])
    page = client.get("/my-drawings")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "no-store" in page.headers["Cache-Control"]
    assert mine in html and unrated in html and theirs not in html
    assert "waiting for review" in html and "Not rated: deleted on" in html
    assert 'href="/my-drawings"' in client.get("/").get_data(as_text=True)  # in the navigation
    fresh = app.test_client().get("/my-drawings").get_data(as_text=True)
    assert "Nothing is kept from this browser." in fresh


def test_the_owner_deletes_a_drawing_from_the_page_and_it_is_gone_everywhere(app, client, canvas_drawings):
    from webapp.dataset import DatasetExport

    app.config["AUTO_CONFIRM"] = True
    app.config["HOLDOUT_FRACTION"] = 0.0
    kept, deleted = contribute(client, canvas_drawings[0]), contribute(client, canvas_drawings[1])
    token = csrf_from(client.get("/my-drawings").get_data(as_text=True))
    # Without the page's CSRF token the form is refused and nothing is deleted.
    assert client.post(f"/my-drawings/{deleted}/delete").status_code == 400
    response = client.post(f"/my-drawings/{deleted}/delete", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/my-drawings")
    assert present(app, deleted) == (False, False, 0, 0)
    assert "The drawing was deleted." in client.get("/my-drawings").get_data(as_text=True)
    with app.app_context():
        export = DatasetExport("npz")
        data = b"".join(export)
        assert list(np.load(io.BytesIO(data))["ids"]) == [kept]
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "drawing.delete"))
        assert event.target == deleted and event.detail["count"] == 1 and "at" in event.detail
        assert event.actor.startswith("visitor:") and client.get("/api/v1/me").json["client_id"] not in event.actor
        assert set(event.detail) == {"count", "at"}  # when and how many, not what


def test_delete_through_the_api_is_for_the_owner_only(app, client, canvas_drawings):
    drawing_id = predict(client, canvas_drawings[0])
    assert client.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": 1}).status_code == 201
    stranger = app.test_client()
    for attempt in (stranger.delete(f"/api/v1/drawings/{drawing_id}"),
                    stranger.delete("/api/v1/drawings/" + "f" * 400),
                    client.delete("/api/v1/drawings/00000000-0000-0000-0000-000000000000")):
        assert attempt.status_code == 404 and attempt.json["code"] == "not_found"
    assert present(app, drawing_id) == (True, True, 2, 1)
    # A stranger's page form is refused the same way.
    token = csrf_from(stranger.get("/my-drawings").get_data(as_text=True))
    stranger.post(f"/my-drawings/{drawing_id}/delete", data={"csrf_token": token})
    assert present(app, drawing_id)[0] is True

    response = client.delete(f"/api/v1/drawings/{drawing_id}")
    assert response.status_code == 200 and response.json == {"id": drawing_id, "deleted": True}
    assert present(app, drawing_id) == (False, False, 0, 0)
    assert client.delete(f"/api/v1/drawings/{drawing_id}").status_code == 404


def test_a_deleted_drawing_is_not_in_the_next_runs_samples(app, client, canvas_drawings, admin_token, monkeypatch):
    """Through the run itself: fine-tuning is replaced by a probe that records what it was given."""
    import training.finetune
    from workers.fine_tuning import execute_run
    from workers import tasks

    class Probed(Exception):
        pass

    given = {}

    def probe(parent_keras, *, new, **kwargs):
        given["pixels"] = new.x.copy()
        raise Probed()

    monkeypatch.setattr(training.finetune, "fine_tune", probe)
    monkeypatch.setattr(training.finetune, "evaluate", lambda *args, **kwargs: {})
    monkeypatch.setattr(tasks.fine_tune_models, "apply_async", lambda *a, **k: type("R", (), {"id": "t"})())
    app.config.update(AUTO_CONFIRM=True, HOLDOUT_FRACTION=0.0, RETRAIN_EVERY=0)
    ids = [contribute(client, drawing) for drawing in canvas_drawings[:3]]
    with app.app_context():
        deleted_pixels = db.session.get(Drawing, ids[1]).pixels
    assert client.delete(f"/api/v1/drawings/{ids[1]}").status_code == 200
    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    with app.app_context():
        execute_run(run_id)
    samples = given["pixels"].reshape(-1, 784)
    assert len(samples) == 2
    assert not any(sample.tobytes() == deleted_pixels for sample in samples.astype(np.uint8))


# ---- who may read drawings ----------------------------------------------------------------------

@pytest.fixture
def reader_token(runner):
    assert runner.invoke(args=["users", "create", "rita", "--role", "reviewer", "--password", PASSWORD]).exit_code == 0
    output = runner.invoke(args=["tokens", "create", "rita-read", "--user", "rita", "--scope", "read"]).output
    return {"Authorization": f"Bearer {output.strip().splitlines()[-1]}"}


def reads(client, drawing_id, **kwargs) -> tuple[int, int]:
    return (client.get(f"/api/v1/drawings/{drawing_id}", **kwargs).status_code,
            client.get(f"/api/v1/drawings/{drawing_id}/image", **kwargs).status_code)


def listed(client, **kwargs) -> set[str]:
    response = client.get("/api/v1/drawings", **kwargs)
    assert response.status_code == 200
    return {item["id"] for item in response.json["items"]}


def test_nobody_reads_another_visitors_drawings(app, client, canvas_drawings, reader_token, runner):
    contributed, unrated = contribute(client, canvas_drawings[0]), predict(client, canvas_drawings[1])
    stranger = app.test_client()
    for drawing_id in (contributed, unrated):
        assert reads(stranger, drawing_id) == (404, 404)
        body = stranger.get(f"/api/v1/drawings/{drawing_id}").json
        assert body == {"error": "no drawing with that id", "code": "not_found"}  # as for an unknown id
        assert reads(client, drawing_id) == (200, 200)
        assert reads(stranger, drawing_id, headers=reader_token) == (200, 200)
    assert listed(stranger) == set() and listed(client) == {contributed, unrated}
    assert listed(stranger, headers=reader_token) == {contributed, unrated}
    # A token of an account with no role reads nothing, whatever its scopes say.
    runner.invoke(args=["users", "create", "nora", "--role", "reviewer", "--password", PASSWORD])
    output = runner.invoke(args=["tokens", "create", "nora-read", "--user", "nora", "--scope", "read"]).output
    with app.app_context():
        from webapp.models import User

        db.session.execute(update(User).where(User.username == "nora").values(role="none"))
        db.session.commit()
    nobody = {"Authorization": f"Bearer {output.strip().splitlines()[-1]}"}
    assert stranger.get(f"/api/v1/drawings/{contributed}", headers=nobody).status_code == 403


def test_an_admin_session_sees_every_image_on_the_admin_pages(app, client, canvas_drawings, runner):
    drawing_id = contribute(client, canvas_drawings[0])
    admin = app.test_client()
    runner.invoke(args=["users", "create-admin", "root", "--password", PASSWORD])
    assert log_in(admin).status_code == 302
    assert reads(admin, drawing_id) == (200, 200)
    assert drawing_id in admin.get("/admin/dataset").get_data(as_text=True)


def test_a_public_dataset_lists_what_people_gave_but_never_unrated_predictions(app, client, canvas_drawings):
    app.config["PUBLIC_DATASET"] = True
    contributed, unrated = contribute(client, canvas_drawings[0]), predict(client, canvas_drawings[1])
    rated = predict(client, canvas_drawings[2])
    assert client.post(f"/api/v1/predictions/{rated}/feedback", json={"label": 5}).status_code == 201
    stranger = app.test_client()
    assert listed(stranger) == {contributed, rated}
    assert reads(stranger, contributed) == (200, 200) and reads(stranger, unrated) == (404, 404)
    about = stranger.get("/about").get_data(as_text=True)
    assert "this site publishes them" in about


def test_the_privacy_notice_says_what_is_kept_and_for_how_long(app, client):
    app.config["PREDICTION_RETENTION"] = timedelta(days=3)
    for path in ("/contribute", "/about"):
        html = client.get(path).get_data(as_text=True)
        assert 'id="privacy-notice"' in html and "3 days" in html and 'href="/my-drawings"' in html
        assert "reviewers and admins; nobody else" in html
