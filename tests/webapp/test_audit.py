"""The audit log (one test per action, the admin page and its filters, the export's audit member)
and per-token rate limits."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEvent, ModelVersion

PASSWORD = "long enough"


def events(app, action=None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


def csrf_from(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def sign_in(client, username, password=PASSWORD):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    assert client.post("/admin/login", data={"username": username, "password": password,
                                             "csrf_token": token}).status_code == 302
    return {"X-CSRFToken": csrf_from(client.get("/").get_data(as_text=True))}


@pytest.fixture
def staff(runner):
    for args in (["users", "create-admin", "root", "--password", PASSWORD],
                 ["users", "create", "rita", "--role", "reviewer", "--password", PASSWORD]):
        assert runner.invoke(args=args).exit_code == 0


def contribute(client, drawing, **extra):
    response = client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": drawing.label, **extra})
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_confirm_is_recorded_with_the_reviewer(app, client, staff, canvas_drawings):
    drawing_id = contribute(client, canvas_drawings[0])
    headers = sign_in(client, "rita")
    assert client.post(f"/api/v1/drawings/{drawing_id}/review", json={"status": "confirmed"},
                       headers=headers).status_code == 200
    [event] = events(app, "drawing.confirm")
    assert (event.actor, event.target, event.detail["label"]) == ("rita", drawing_id, canvas_drawings[0].label)


def test_reject_is_recorded(app, client, staff, canvas_drawings):
    drawing_id = contribute(client, canvas_drawings[0])
    headers = sign_in(client, "rita")
    client.post(f"/api/v1/drawings/{drawing_id}/review", json={"status": "rejected", "not_digit": True},
                headers=headers)
    [event] = events(app, "drawing.reject")
    assert event.actor == "rita" and event.target == drawing_id and event.detail["not_digit"] is True


def test_relabel_is_recorded_with_both_labels(app, client, admin_token, canvas_drawings):
    drawing = canvas_drawings[0]
    drawing_id = contribute(client, drawing)
    new_label = (drawing.label + 1) % 10
    assert client.post(f"/api/v1/drawings/{drawing_id}/review", json={"status": "confirmed", "label": new_label},
                       headers=admin_token).status_code == 200
    [event] = events(app, "drawing.relabel")
    assert event.detail == {"from": drawing.label, "to": new_label}
    assert event.actor.startswith("token:root-")
    assert len(events(app, "drawing.confirm")) == 1


def test_a_failed_bulk_review_records_nothing(app, client, admin_token, canvas_drawings):
    drawing_id = contribute(client, canvas_drawings[0])
    response = client.post("/api/v1/drawings/review", headers=admin_token, json={"items": [
        {"id": drawing_id, "status": "confirmed", "label": 3}, {"id": drawing_id + "x", "status": "confirmed"}]})
    assert response.status_code in (400, 404)
    second = contribute(client, canvas_drawings[1])
    response = client.post("/api/v1/drawings/review", headers=admin_token, json={"items": [
        {"id": drawing_id, "status": "confirmed", "label": 3}, {"id": second, "status": "maybe"}]})
    assert response.status_code == 400
    assert [event.action for event in events(app)] == ["user.create", "token.create"]  # the fixture's


def test_flag_is_recorded_for_the_visitor_without_their_cookie(app, client, canvas_drawings):
    drawing_id = contribute(client, canvas_drawings[0])
    client_id = client.get("/api/v1/me").json["client_id"]
    assert client.post(f"/api/v1/drawings/{drawing_id}/not-a-digit").status_code == 200
    client.post(f"/api/v1/drawings/{drawing_id}/not-a-digit")  # once flagged, not again
    [event] = events(app, "drawing.flag")
    assert event.actor.startswith("visitor:") and client_id not in event.actor and event.target == drawing_id
    other = app.test_client()
    other.get("/")
    assert other.post(f"/api/v1/drawings/{drawing_id}/not-a-digit").status_code == 404
    assert len(events(app, "drawing.flag")) == 1


@pytest.fixture
def version_two(app):
    """A second fnn version, the same files as the first, so it can be activated and rolled back from."""
    with app.app_context():
        first = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "fnn", ModelVersion.version == 1))
        db.session.add(ModelVersion(name="fnn", version=2, status="candidate", parent_version=1,
                                    object_prefix=first.object_prefix, onnx_sha256=first.onnx_sha256,
                                    metrics=first.metrics, manifest=first.manifest))
        db.session.commit()


def test_activate_and_rollback_are_told_apart(app, client, admin_token, version_two):
    assert client.post("/api/v1/models/fnn/versions/2/activate", headers=admin_token).status_code == 200
    assert client.post("/api/v1/models/fnn/versions/2/activate", headers=admin_token).status_code == 200
    assert client.post("/api/v1/models/fnn/versions/1/activate", headers=admin_token,
                       json={"reason": "v2 misreads sevens"}).status_code == 200
    [activated] = events(app, "model.activate")
    [rolled_back] = events(app, "model.rollback")
    assert activated.target == "fnn v2" and activated.detail["from"] == 1
    assert rolled_back.target == "fnn v1" and rolled_back.detail == {"from": 2, "reason": "v2 misreads sevens"}


def test_starting_a_run_is_recorded_once(app, client, admin_token, monkeypatch):
    from workers import tasks

    class Result:
        id = "task-id"

    monkeypatch.setattr(tasks.fine_tune_models, "apply_async", lambda args=None, **kwargs: Result())
    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    client.post("/api/v1/training-runs", headers=admin_token)  # returns the running one
    [event] = events(app, "run.start")
    assert event.target == run_id


def test_accounts_and_tokens_are_recorded(app, client, runner, staff):
    headers = sign_in(client, "root")
    created = client.post("/api/v1/tokens", headers=headers, json={"name": "ci", "scopes": ["read"]}).json
    client.delete(f"/api/v1/tokens/{created['id']}", headers=headers)
    runner.invoke(args=["users", "disable", "rita"])
    runner.invoke(args=["users", "reset-password", "root", "--password", "another password"])
    actions = [(event.action, event.actor, event.target) for event in events(app)]
    assert actions == [("user.create", "cli", "root"), ("user.create", "cli", "rita"),
                       ("token.create", "root", "token:ci"), ("token.revoke", "root", "token:ci"),
                       ("user.disable", "cli", "rita"), ("user.reset_password", "cli", "root")]


def test_record_refuses_an_unknown_action(app):
    from webapp.audit import record

    with app.app_context(), pytest.raises(ValueError):
        record("drawing.burn", target="x")


def test_the_audit_page_filters_and_pages(app, client, staff):
    from webapp.audit import record

    with app.app_context():
        for number in range(60):
            record("drawing.delete", actor="someone", target=f"d{number}")
        record("model.activate", actor="other", target="cnn v3")
        db.session.commit()
    sign_in(client, "root")
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "63 events" in page and 'id="page-next"' in page
    only = client.get("/admin/audit?action=model.activate").get_data(as_text=True)
    assert "cnn v3" in only and "d59" not in only
    by_actor = client.get("/admin/audit?actor=someone&page=2").get_data(as_text=True)
    assert "60 events" in by_actor and "d9<" in by_actor and "d59" not in by_actor
    assert "0 events" in client.get("/admin/audit?since=2999-01-01").get_data(as_text=True)
    for bad in ("page=%C2%B2", "page=0", "page=1e3", "action=drop", "since=yesterday"):
        response = client.get(f"/admin/audit?{bad}")
        assert response.status_code == 400, bad
    sign_in(reviewer := app.test_client(), "rita")
    assert reviewer.get("/admin/audit").status_code == 403


def test_the_export_carries_the_drawings_audit_trail(app, client, admin_token, canvas_drawings):
    drawing_id = contribute(client, canvas_drawings[0])
    client.post(f"/api/v1/drawings/{drawing_id}/review", json={"status": "confirmed", "label": 1},
                headers=admin_token)
    body = client.get("/api/v1/dataset/export?format=zip", headers=admin_token).get_data()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        lines = archive.read("audit.jsonl").decode().splitlines()
    trail = [json.loads(line) for line in lines]
    assert [entry["action"] for entry in trail] == ["drawing.relabel", "drawing.confirm"]
    assert all(entry["drawing"] == drawing_id for entry in trail)
    assert trail[1]["actor"].startswith("token:root-")


@pytest.fixture
def limited(database_url, object_root, tmp_path, tiny_models):
    from tests.webapp.conftest import make_app, serve
    from webapp.extensions import limiter

    app = make_app(database_url, object_root, tmp_path, RATELIMIT_ENABLED=True, RATE_LIMIT_PREDICTIONS="2/minute",
                   RATE_LIMIT_CONTRIBUTIONS="2/minute", TOKEN_PREDICT_LIMIT="4/minute",
                   TOKEN_CONTRIBUTE_LIMIT="3/minute")
    limiter.reset()
    yield from serve(app, tiny_models[0])
    limiter.reset()


def test_tokens_are_limited_per_token_with_their_own_limits(limited, canvas_drawings):
    from webapp import accounts
    from webapp.models import User

    runner = limited.test_cli_runner()
    runner.invoke(args=["users", "create-admin", "root", "--password", PASSWORD])
    with limited.test_request_context():
        root = db.session.scalar(select(User).where(User.username == "root"))
        _, first = accounts.issue_token(user=root, name="first", scopes=["contribute"])
        _, second = accounts.issue_token(user=root, name="second", scopes=["contribute"], predict_limit="6/minute")
    client = limited.test_client()
    image = {"image": canvas_drawings[0].data_url}

    def predictions(headers, count):
        return [client.post("/api/v1/predictions", json=image, headers=headers).status_code for _ in range(count)]

    # The visitor's address runs out at 2; a token from the same address has its own count.
    assert predictions({}, 3) == [200, 200, 429]
    assert predictions({"Authorization": f"Bearer {first}"}, 5) == [200] * 4 + [429]
    assert predictions({"Authorization": f"Bearer {second}"}, 7) == [200] * 6 + [429]
    body = {"image": canvas_drawings[0].data_url, "label": canvas_drawings[0].label}
    statuses = [client.post("/api/v1/drawings", json=body, headers={"Authorization": f"Bearer {first}"}).status_code
                for _ in range(4)]
    assert statuses == [201] * 3 + [429]
