"""Admin pages and actions: login, CSRF, review queue, dashboard, dataset browser; "not a digit";
guided contributions; languages."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from webapp.extensions import db
from webapp.models import Drawing, User

PAGES = ["/admin/", "/admin/review", "/admin/dataset"]
PASSWORD = "long enough"


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def log_in(client, username="root", password=PASSWORD, next_url=None):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    path = "/admin/login" + (f"?next={next_url}" if next_url else "")
    return client.post(path, data={"username": username, "password": password, "csrf_token": token})


@pytest.fixture
def admin(app, runner):
    result = runner.invoke(args=["users", "create-admin", "root", "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    return "root"


@pytest.fixture
def signed_in(client, admin):
    assert log_in(client).status_code == 302
    return client


def contribute(client, drawing, label=None, **extra):
    body = {"image": drawing.data_url, "label": drawing.label if label is None else label, **extra}
    response = client.post("/api/v1/drawings", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


@pytest.mark.parametrize("path", PAGES)
def test_admin_pages_send_strangers_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=")


def test_a_user_who_is_not_an_admin_cannot_sign_in_or_see_the_pages(app, client):
    with app.app_context():
        db.session.add(User(username="guest", password_hash=generate_password_hash(PASSWORD), is_admin=False))
        db.session.commit()
    assert log_in(client, "guest").status_code == 401
    assert client.get("/admin/").status_code == 302


def test_wrong_password_is_refused_and_the_right_one_works(client, admin):
    response = log_in(client, password="not the password")
    assert response.status_code == 401
    assert "Wrong username or password" in response.get_data(as_text=True)
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, path
        assert 'id="logout-button"' in page.get_data(as_text=True)


def test_login_without_its_csrf_token_is_refused(client, admin):
    client.get("/admin/login")
    response = client.post("/admin/login", data={"username": "root", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_login_only_redirects_within_the_site(client, admin):
    assert log_in(client, next_url="/admin/review").headers["Location"] == "/admin/review"
    client.post("/admin/logout", data={"csrf_token": csrf_from(client.get("/admin/").get_data(as_text=True))})
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert log_in(client, next_url=target).headers["Location"] == "/admin/"
        client.post("/admin/logout", data={"csrf_token": csrf_from(client.get("/admin/").get_data(as_text=True))})


def test_logout_needs_its_csrf_token(signed_in):
    assert signed_in.post("/admin/logout").status_code == 400
    assert signed_in.get("/admin/").status_code == 200
    token = csrf_from(signed_in.get("/admin/").get_data(as_text=True))
    assert signed_in.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert signed_in.get("/admin/").status_code == 302


def test_session_calls_to_the_admin_api_need_the_csrf_header(app, signed_in, canvas_drawings):
    drawing_id = contribute(signed_in, canvas_drawings[0])
    path = f"/api/v1/drawings/{drawing_id}/review"
    refused = signed_in.post(path, json={"status": "confirmed"})
    assert refused.status_code == 400 and "CSRF" in refused.json["error"]
    with app.app_context():
        assert db.session.get(Drawing, drawing_id).status == "pending"
    token = csrf_from(signed_in.get("/admin/review").get_data(as_text=True))
    response = signed_in.post(path, json={"status": "confirmed"}, headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.json["status"] == "confirmed"
    # Reading needs no token; a stranger gets 401, not the data.
    assert signed_in.get("/api/v1/training-runs").status_code == 200
    assert app.test_client().get("/api/v1/training-runs").status_code == 401


def test_bulk_review_confirms_relabels_and_rejects_in_one_go(app, signed_in, canvas_drawings):
    ids = [contribute(signed_in, drawing) for drawing in canvas_drawings[:4]]
    token = csrf_from(signed_in.get("/admin/review").get_data(as_text=True))
    items = [{"id": ids[0], "status": "confirmed"},
             {"id": ids[1], "status": "confirmed", "label": (canvas_drawings[1].label + 1) % 10},
             {"id": ids[2], "status": "rejected"},
             {"id": ids[3], "status": "rejected", "not_digit": True}]
    response = signed_in.post("/api/v1/drawings/review", json={"items": items}, headers={"X-CSRFToken": token})
    assert response.status_code == 200, response.json
    assert [item["status"] for item in response.json["items"]] == ["confirmed", "confirmed", "rejected", "rejected"]
    with app.app_context():
        rows = {row.id: row for row in db.session.scalars(select(Drawing).where(Drawing.id.in_(ids)))}
        assert rows[ids[1]].label == (canvas_drawings[1].label + 1) % 10
        assert rows[ids[3]].not_digit and not rows[ids[2]].not_digit
        assert rows[ids[0]].confirmed_at is not None


def test_bulk_review_is_all_or_nothing(app, signed_in, canvas_drawings):
    ids = [contribute(signed_in, drawing) for drawing in canvas_drawings[:2]]
    token = csrf_from(signed_in.get("/admin/review").get_data(as_text=True))
    headers = {"X-CSRFToken": token}
    bad = [{"id": ids[0], "status": "confirmed"}, {"id": ids[1], "status": "confirmed", "label": 12}]
    assert signed_in.post("/api/v1/drawings/review", json={"items": bad}, headers=headers).status_code == 400
    unknown = [{"id": ids[0], "status": "confirmed"}, {"id": "no-such-id", "status": "confirmed"}]
    assert signed_in.post("/api/v1/drawings/review", json={"items": unknown}, headers=headers).status_code == 404
    for body in ({"items": []}, {"items": "x"}, {"items": [{"id": ids[0], "status": "confirmed"}] * 2}):
        assert signed_in.post("/api/v1/drawings/review", json=body, headers=headers).status_code == 400
    with app.app_context():
        assert {row.status for row in db.session.scalars(select(Drawing).where(Drawing.id.in_(ids)))} == {"pending"}


def test_review_queue_shows_pending_drawings_with_both_guesses_and_filters(app, signed_in, canvas_drawings):
    first = contribute(signed_in, canvas_drawings[0])
    second = contribute(signed_in, canvas_drawings[1], label=(canvas_drawings[1].label + 5) % 10)
    page = signed_in.get("/admin/review").get_data(as_text=True)
    assert first in page and second in page
    assert 'data-guess="fnn"' in page and 'data-guess="cnn"' in page
    by_label = signed_in.get(f"/admin/review?label={canvas_drawings[0].label}").get_data(as_text=True)
    assert first in by_label
    with app.app_context():
        wrong = db.session.get(Drawing, second)
        disagreeing = any(p.label != wrong.label for p in wrong.predictions)
    if disagreeing:  # the networks read the true digit, not the wrong label
        assert second in signed_in.get("/admin/review?disagree=1").get_data(as_text=True)
    assert first not in signed_in.get("/admin/review?source=feedback").get_data(as_text=True)
    assert first not in signed_in.get("/admin/review?since=2999-01-01").get_data(as_text=True)
    assert first in signed_in.get("/admin/review?until=2999-01-01").get_data(as_text=True)
    for bad in ("label=x", "status=maybe", "since=yesterday", "page=0", "source=mail"):
        assert signed_in.get(f"/admin/review?{bad}").status_code == 400, bad


def test_dashboard_shows_counts_versions_confusion_and_runs(app, signed_in, canvas_drawings):
    for drawing in canvas_drawings[:3]:
        answer = signed_in.post("/api/v1/predictions", json={"image": drawing.data_url}).json
        signed_in.post(f"/api/v1/predictions/{answer['id']}/feedback", json={"label": drawing.label})
    contribute(signed_in, canvas_drawings[3])
    page = signed_in.get("/admin/").get_data(as_text=True)
    assert re.search(r'id="count-total">4<', page)
    assert 'id="confusion-fnn"' in page and 'id="confusion-cnn"' in page
    assert "of 3 labelled drawings" in page
    assert 'data-model="cnn" data-version="1" data-status="active"' in page
    assert "<svg" in page and 'data-series="CNN"' in page  # three rated predictions today: a chart
    assert 'id="retrain-button"' in page


def test_dataset_browser_pages_through_drawings(app, signed_in, canvas_drawings):
    ids = [contribute(signed_in, drawing) for drawing in canvas_drawings[:3]]
    page = signed_in.get("/admin/dataset").get_data(as_text=True)
    assert all(drawing_id in page for drawing_id in ids)
    assert 'href="/api/v1/dataset/export?format=npz"' in page


# ---- "not a digit" ----------------------------------------------------------------------------

def test_a_contribution_flagged_not_a_digit_has_no_label_and_is_never_confirmed(app, client, canvas_drawings):
    app.config["AUTO_CONFIRM"] = True
    response = client.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url, "not_digit": True})
    assert response.status_code == 201
    assert response.json["not_digit"] is True and response.json["label"] is None
    assert response.json["status"] == "pending"
    for bad in ("yes", 1, None):
        body = {"image": canvas_drawings[0].data_url, "label": 3, "not_digit": bad}
        assert client.post("/api/v1/drawings", json=body).status_code == 400


def test_people_flag_their_own_predictions_only(app, client, canvas_drawings):
    app.config["AUTO_CONFIRM"] = True
    drawing_id = client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url}).json["id"]
    stranger = app.test_client()
    assert stranger.post(f"/api/v1/drawings/{drawing_id}/not-a-digit").status_code == 404
    client.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": canvas_drawings[0].label})
    with app.app_context():
        assert db.session.get(Drawing, drawing_id).status == "confirmed"
    response = client.post(f"/api/v1/drawings/{drawing_id}/not-a-digit")
    assert response.status_code == 200 and response.json["not_digit"] is True
    with app.app_context():
        row = db.session.get(Drawing, drawing_id)
        # Confirmed before the flag: no longer, so no run trains on it.
        assert row.status == "rejected" and row.not_digit


def test_flagged_drawings_are_in_the_admins_queue(app, signed_in, canvas_drawings):
    flagged = signed_in.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url,
                                                       "not_digit": True}).json["id"]
    normal = contribute(signed_in, canvas_drawings[1])
    page = signed_in.get("/admin/review?not_digit=1").get_data(as_text=True)
    assert flagged in page and normal not in page
    assert re.search(r'id="count-not-digit">1<', signed_in.get("/admin/").get_data(as_text=True))


# ---- guided contributions -----------------------------------------------------------------------

def test_the_prompt_asks_for_the_digit_with_fewest_drawings(app, client, canvas_drawings):
    drawing = canvas_drawings[0]
    for label in range(10):
        if label != 7:
            contribute(client, drawing, label=label)
    needs = client.get("/api/v1/dataset/needs").json
    assert needs["digit"] == 7 and needs["reason"] == "fewest drawings so far"
    assert needs["total"] == 9 and sum(day["drawings"] for day in needs["growth"]) == 9
    assert [entry["drawings"] for entry in needs["digits"]] == [1] * 7 + [0] + [1] * 2
    contribute(client, drawing, label=7)
    contribute(client, drawing, label=7)
    assert client.get("/api/v1/dataset/needs").json["digit"] != 7


def test_the_prompt_prefers_digits_the_networks_misread(app, client, canvas_drawings):
    drawing = canvas_drawings[0]
    for label in range(10):
        contribute(client, drawing, label=label)
    # Equal counts, but a user says the networks misread a drawing of a 3 (whatever they answered,
    # the drawing is really of another digit, so they were wrong).
    wrong = next(d for d in canvas_drawings if d.label != 3)
    drawing_id = client.post("/api/v1/predictions", json={"image": wrong.data_url}).json["id"]
    client.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": 3})
    needs = client.get("/api/v1/dataset/needs").json
    assert needs["digit"] == 3, needs
    assert needs["reason"] == "the networks often misread it"


# ---- languages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, lang, word", [
    ("ja,en;q=0.5", "ja", "貢献"), ("ru-RU,ru;q=0.9", "ru", "Внести"), ("zh-CN,zh;q=0.9", "zh", "贡献"),
    ("fr-FR,fr;q=0.9", "en", "Contribute")])
def test_the_interface_follows_accept_language(client, header, lang, word):
    page = client.get("/contribute", headers={"Accept-Language": header}).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    assert word in page


def test_the_switcher_overrides_accept_language(client):
    response = client.get("/language/ru?next=/contribute")
    assert response.status_code == 302 and response.headers["Location"] == "/contribute"
    page = client.get("/contribute", headers={"Accept-Language": "ja"}).get_data(as_text=True)
    assert '<html lang="ru">' in page
    assert client.get("/language/ru?next=//evil.example").headers["Location"] == "/"
