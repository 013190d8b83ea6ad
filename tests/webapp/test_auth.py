"""Sign-in and sessions against an attacker: where redirects may go, what timing tells, when sessions end."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import User

from .test_admin import PASSWORD, csrf_from

# Each of these leaves the site in some browser or proxy, or is not a plain path.
HOSTILE_TARGETS = [
    "/%09/example.org", "/\\example.org", "\\/example.org", "//example.org", "/%2F%2Fexample.org",
    "/%2f%2fexample.org", "/%252F%252Fexample.org", "/%5Cexample.org", "/%5c%5cexample.org",
    "https://example.org", "http:/example.org", "HTTPS://example.org/", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>", "/\t/x", "/\t/example.org",
    "\t//example.org", " //example.org", "/ /example.org", "///example.org", "/\\t/x",
    "/\uff0fexample.org", "/\u2215example.org", "/%EF%BC%8Fexample.org", "/\uff3cexample.org",
    "/\r\n/example.org", "/%0D%0ASet-Cookie:%20x=1", "/\nexample.org", "/\x00/example.org",
    "example.org", "./admin", "%2F%2Fexample.org", "/" + "a" * 5000,
]
SAFE_TARGETS = ["/contribute", "/admin/review?label=3&status=pending", "/models?", "/admin/dataset?page=2#top"]


@pytest.fixture
def admin(app, runner):
    assert runner.invoke(args=["users", "create-admin", "root", "--password", PASSWORD]).exit_code == 0
    return "root"


def sign_in(client, next_url=None):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    query = {"next": next_url} if next_url is not None else {}
    return client.post("/admin/login", query_string=query,
                       data={"username": "root", "password": PASSWORD, "csrf_token": token})


def sign_out(client):
    token = csrf_from(client.get("/admin/").get_data(as_text=True))
    return client.post("/admin/logout", data={"csrf_token": token})


# ---- redirects -----------------------------------------------------------------------------

def test_the_reviewers_language_switch_url_stays_on_the_site(client):
    assert client.get("/language/en?next=/%09/example.org").headers["Location"] == "/"


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_the_language_switch_never_redirects_off_the_site(client, target):
    response = client.get("/language/en", query_string={"next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("target", SAFE_TARGETS)
def test_the_language_switch_goes_back_to_pages_of_the_site(client, target):
    # Werkzeug drops an empty query's "?" (request.full_path, which the switcher sends, has one).
    assert client.get("/language/en", query_string={"next": target}).headers["Location"] == target.rstrip("?")


def test_sign_in_never_redirects_off_the_site(client, admin):
    for target in HOSTILE_TARGETS:
        response = sign_in(client, target)
        assert response.status_code == 302 and response.headers["Location"] == "/admin/", repr(target)
        # Signed in already: the login page redirects at once, through the same check.
        response = client.get("/admin/login", query_string={"next": target})
        assert response.headers["Location"] == "/admin/", repr(target)
        sign_out(client)
    for target in SAFE_TARGETS:
        assert sign_in(client, target).headers["Location"] == target.rstrip("?")
        sign_out(client)


# ---- timing --------------------------------------------------------------------------------

@pytest.fixture
def hash_checks(monkeypatch):
    """Every password hash the sign-in checks, as (stored hash, password)."""
    from webapp import admin as admin_pages

    calls = []
    real = admin_pages.check_password_hash

    def counting(stored, password):
        calls.append((stored, password))
        return real(stored, password)

    monkeypatch.setattr(admin_pages, "check_password_hash", counting)
    return calls


@pytest.mark.parametrize("username", ["nobody", "root", "guest"])
def test_every_sign_in_runs_the_password_hash(app, client, admin, hash_checks, username):
    from werkzeug.security import generate_password_hash

    with app.app_context():
        db.session.add(User(username="guest", password_hash=generate_password_hash(PASSWORD), is_admin=False))
        db.session.commit()
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    password = PASSWORD if username == "guest" else "not the password"
    response = client.post("/admin/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 401
    assert [password for _, password in hash_checks] == [password]


def test_the_stand_in_hash_costs_what_a_real_one_costs(app, admin):
    from webapp.admin import dummy_password_hash

    with app.app_context():
        real = db.session.scalar(select(User.password_hash).where(User.username == "root"))
    # "scrypt:32768:8:1": the method and its work factors.
    assert dummy_password_hash().split("$")[0] == real.split("$")[0]
    assert dummy_password_hash() == dummy_password_hash()  # made once


def test_no_server_timing_on_sign_in_sign_out_or_refused_tokens(client, admin):
    assert "Server-Timing" in client.get("/about").headers
    assert "Server-Timing" not in client.get("/admin/login").headers
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    for password in ("not the password", PASSWORD):
        response = client.post("/admin/login", data={"username": "root", "password": password, "csrf_token": token})
        assert response.status_code in (302, 401) and "Server-Timing" not in response.headers
    assert "Server-Timing" not in sign_out(client).headers
    for header in ("Bearer not-a-token", "Basic cm9vdDpsb25n"):
        response = client.get("/api/v1/training-runs", headers={"Authorization": header})
        assert response.status_code == 401 and "Server-Timing" not in response.headers


# ---- sessions end --------------------------------------------------------------------------

def assert_signed_out(client):
    page = client.get("/admin/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/admin/login")
    assert client.get("/api/v1/training-runs").status_code == 401


def replay(app, cookie):
    """A fresh client carrying a copied session cookie, as a thief would."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief


def test_a_cookie_copied_before_sign_out_opens_nothing_after(app, client, admin):
    assert sign_in(client).status_code == 302
    stolen = client.get_cookie("session").value
    assert replay(app, stolen).get("/admin/").status_code == 200
    assert sign_out(client).status_code == 302
    assert_signed_out(replay(app, stolen))
    assert_signed_out(client)


def test_sign_out_ends_the_users_other_sessions_too(app, admin):
    laptop, phone = app.test_client(), app.test_client()
    assert sign_in(laptop).status_code == 302 and sign_in(phone).status_code == 302
    sign_out(laptop)
    assert_signed_out(phone)
    assert sign_in(phone).status_code == 302 and phone.get("/admin/").status_code == 200


def test_a_new_password_ends_every_session(app, client, runner, admin):
    assert sign_in(client).status_code == 302
    stolen = client.get_cookie("session").value
    result = runner.invoke(args=["users", "create-admin", "root", "--password", "a new long password"])
    assert result.exit_code == 0, result.output
    assert_signed_out(replay(app, stolen))
    assert_signed_out(client)
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    assert client.post("/admin/login", data={"username": "root", "password": "a new long password",
                                             "csrf_token": token}).status_code == 302


def test_disabling_an_account_ends_its_sessions_sign_in_and_tokens(app, client, runner, admin):
    token = runner.invoke(args=["users", "issue-token", "root"]).output.strip().splitlines()[-1]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/training-runs", headers=bearer).status_code == 200
    assert sign_in(client).status_code == 302
    stolen = client.get_cookie("session").value
    result = runner.invoke(args=["users", "disable", "root"])
    assert result.exit_code == 0, result.output
    assert_signed_out(replay(app, stolen))
    assert app.test_client().get("/api/v1/training-runs", headers=bearer).status_code == 401
    refused = sign_in(app.test_client())
    assert refused.status_code == 401 and "Wrong username or password" in refused.get_data(as_text=True)
    assert runner.invoke(args=["users", "disable", "nobody"]).exit_code != 0
    # create-admin gives the account a new password and turns it back on.
    assert runner.invoke(args=["users", "create-admin", "root", "--password", PASSWORD]).exit_code == 0
    assert sign_in(app.test_client()).status_code == 302


@pytest.mark.parametrize("session_id", ["1", "1:", ":0", "1:x", "x:0", "1:0:0", "-1:0", "１:0"])
def test_session_ids_of_the_wrong_shape_sign_nobody_in(app, session_id):
    from webapp.auth import login_manager

    with app.test_request_context():
        assert login_manager._user_callback(session_id) is None
