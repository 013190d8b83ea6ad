"""Visitors on SQLite and PostgreSQL: a signed anonymous cookie."""

from __future__ import annotations

from flask import Flask

from webapp.extensions import db
from webapp.models import Drawing
from webapp.visitors import CLIENT_COOKIE, client_id_from_cookie, cookie_for


def another_deployment() -> Flask:
    other = Flask("another")
    other.secret_key = "another deployment's key"
    return other


def me(client) -> str:
    return client.get("/api/v1/me").json["client_id"]


def stored(app, drawing_id) -> tuple:
    with app.app_context():
        row = db.session.get(Drawing, drawing_id)
        return row.source, row.label, row.not_digit


# ---- the anonymous cookie ---------------------------------------------------------------------

def test_the_client_cookie_is_signed_and_keeps_its_attributes(app, client):
    response = client.get("/")
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    value = client.get_cookie(CLIENT_COOKIE).value
    client_id = me(client)
    assert value != client_id and value.startswith(client_id + ".")
    assert client_id_from_cookie(value, app) == client_id
    assert "Set-Cookie" not in client.get("/api/v1/me").headers  # a signed cookie is kept
    app.config["SESSION_COOKIE_SECURE"] = True
    assert "Secure" in app.test_client().get("/").headers["Set-Cookie"]


def test_a_forged_or_tampered_client_cookie_is_a_fresh_visitor(app, client, canvas_drawings):
    body = {"image": canvas_drawings[0].data_url, "label": canvas_drawings[0].label}
    contributed = client.post("/api/v1/drawings", json=body).json["id"]
    victim, signed = me(client), client.get_cookie(CLIENT_COOKIE).value
    value, signature = signed.rsplit(".", 1)
    middle = len(signature) // 2
    altered = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    forgeries = {
        "the bare id, as the cookie used to be": victim,
        "another id under the victim's signature": ("A" if value[0] != "A" else "B") + signed[1:],
        "the victim's id, the signature altered": f"{value}.{altered}",
        "signed with another key": cookie_for(victim, another_deployment()),
        "far too long": signed + "x" * 500,
    }
    for what, value in forgeries.items():
        attacker = app.test_client()
        attacker.set_cookie(CLIENT_COOKIE, value)
        response = attacker.get("/api/v1/me")
        assert response.json["client_id"] != victim and response.json["contributions"] == 0, what
        assert f"{CLIENT_COOKIE}=" in response.headers.get("Set-Cookie", ""), what  # a fresh identity
        assert attacker.post(f"/api/v1/drawings/{contributed}/not-a-digit").status_code == 404, what
    assert stored(app, contributed)[2] is False
    assert client.get("/api/v1/me").json == {"client_id": victim, "contributions": 1}
