"""Roles, scoped tokens and who may reach what: the access matrix over every staff endpoint."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ApiToken, User, utcnow

PASSWORD = "long enough"
MISSING = "00000000-0000-4000-8000-000000000000"

# Every endpoint of the staff blueprints: how to call it, and what it needs. A new endpoint
# without an entry fails test_every_staff_endpoint_is_in_the_matrix.
#   need: "public" (sign-in and sign-out), "review" or "admin".
ENDPOINTS = {
    "admin.login": ("GET", "/admin/login", "public"),
    "admin.logout": ("POST", "/admin/logout", "public"),
    "admin.dashboard": ("GET", "/admin/", "admin"),
    "admin.review": ("GET", "/admin/review", "review"),
    "admin.dataset": ("GET", "/admin/dataset", "review"),
    "access.accounts_page": ("GET", "/admin/accounts", "admin"),
    "access.create_account": ("POST", "/admin/accounts", "admin"),
    "access.disable_account": ("POST", "/admin/accounts/999999/disable", "admin"),
    "access.enable_account": ("POST", "/admin/accounts/999999/enable", "admin"),
    "access.reset_password": ("POST", "/admin/accounts/999999/password", "admin"),
    "access.tokens_page": ("GET", "/admin/tokens", "admin"),
    "access.create_token": ("POST", "/admin/tokens", "admin"),
    "access.revoke_token": ("POST", "/admin/tokens/999999/revoke", "admin"),
    "access.audit": ("GET", "/admin/audit", "admin"),
    "sets_admin.label_sets_page": ("GET", "/admin/label-sets", "admin"),
    "sets_admin.create_label_set": ("POST", "/admin/label-sets", "admin"),
    "sets_admin.close_label_set": ("POST", "/admin/label-sets/nope/close", "admin"),
    "admin_api.review_drawing": ("POST", f"/api/v1/drawings/{MISSING}/review", "review"),
    "admin_api.review_drawings": ("POST", "/api/v1/drawings/review", "review"),
    "admin_api.export_dataset": ("GET", "/api/v1/dataset/export?format=npz", "review"),
    "admin_api.import_dataset": ("POST", "/api/v1/dataset/import?format=npz", "admin"),
    "admin_api.create_training_run": ("POST", "/api/v1/training-runs", "admin"),
    "admin_api.list_training_runs": ("GET", "/api/v1/training-runs", "admin"),
    "admin_api.get_training_run": ("GET", f"/api/v1/training-runs/{MISSING}", "admin"),
    "admin_api.activate_version": ("POST", "/api/v1/models/fnn/versions/1/activate", "admin"),
    "admin_api.list_tokens": ("GET", "/api/v1/tokens", "admin"),
    "admin_api.create_token": ("POST", "/api/v1/tokens", "admin"),
    "admin_api.revoke_token": ("DELETE", "/api/v1/tokens/999999", "admin"),
}
STAFF_BLUEPRINTS = ("admin", "access", "sets_admin", "admin_api")
BODIES = {"admin_api.review_drawing": {"status": "confirmed"},
          "admin_api.review_drawings": {"items": [{"id": MISSING, "status": "confirmed"}]},
          "admin_api.create_token": {}}

# Who asks: (kind, what they may do). Tokens carry their scopes; sessions their role.
PRINCIPALS = {
    "anonymous": ("nobody", set()),
    "reviewer session": ("session", {"read", "contribute", "review"}),
    "admin session": ("session", {"read", "contribute", "review", "admin"}),
    "read token": ("token", {"read"}),
    "contribute token": ("token", {"read", "contribute"}),
    "review token": ("token", {"read", "review"}),
    "admin token": ("token", {"read", "contribute", "review", "admin"}),
    "expired token": ("bad token", set()),
    "revoked token": ("bad token", set()),
}


def expected_status(endpoint: str, principal: str) -> str:
    method, path, need = ENDPOINTS[endpoint]
    kind, allowed = PRINCIPALS[principal]
    if need == "public":
        return "ok"
    if path.startswith("/admin/"):
        # Pages go by the session alone: a token on a page is nobody.
        if kind != "session":
            return "login"
        return "ok" if need in allowed else "403"
    if kind == "nobody" or kind == "bad token":
        return "401"
    return "ok" if need in allowed else "403"


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client, username, password=PASSWORD):
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"username": username, "password": password, "csrf_token": token})


def make_token(app, username, name, scopes, *, expires_days=None, **limits) -> str:
    from webapp import accounts

    with app.test_request_context():
        user = db.session.scalar(select(User).where(User.username == username))
        _token, secret = accounts.issue_token(user=user, name=name, scopes=scopes, expires_days=expires_days, **limits)
        return secret


@pytest.fixture
def staff(app, runner):
    """An admin and a reviewer made with the CLI, and a token for each scope and each failure."""
    for args in (["users", "create-admin", "root", "--password", PASSWORD],
                 ["users", "create", "rita", "--role", "reviewer", "--password", PASSWORD]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    tokens = {f"{scope} token": make_token(app, "root", f"t-{scope}", [scope])
              for scope in ("read", "contribute", "review", "admin")}
    tokens["expired token"] = make_token(app, "root", "t-expired", ["admin"])
    tokens["revoked token"] = make_token(app, "root", "t-revoked", ["admin"])
    with app.app_context():
        expired = db.session.scalar(select(ApiToken).where(ApiToken.name == "t-expired"))
        expired.expires_at = utcnow() - timedelta(seconds=1)
        db.session.scalar(select(ApiToken).where(ApiToken.name == "t-revoked")).revoked_at = utcnow()
        db.session.commit()
    return tokens


@pytest.fixture
def principals(app, staff):
    """A client per principal, each holding a CSRF token for its own session."""
    clients = {}
    for name, (kind, _allowed) in PRINCIPALS.items():
        client = app.test_client()
        if name == "reviewer session":
            assert sign_in(client, "rita").status_code == 302
        elif name == "admin session":
            assert sign_in(client, "root").status_code == 302
        csrf = csrf_from(client.get("/admin/login").get_data(as_text=True)) if kind != "session" else \
            csrf_from(client.get("/").get_data(as_text=True))
        headers = {"X-CSRFToken": csrf}
        if name in staff:
            headers["Authorization"] = f"Bearer {staff[name]}"
        clients[name] = (client, headers, csrf)
    return clients


def test_every_staff_endpoint_is_in_the_matrix(app):
    staff_endpoints = {rule.endpoint for rule in app.url_map.iter_rules()
                       if rule.endpoint.split(".")[0] in STAFF_BLUEPRINTS}
    assert staff_endpoints == set(ENDPOINTS), "give each staff endpoint an entry (and each entry an endpoint)"


def test_the_access_matrix(app, principals, queued):
    failures = []
    for endpoint, (method, path, need) in ENDPOINTS.items():
        if need == "public":
            continue
        for principal, (client, headers, csrf) in principals.items():
            kwargs = {"headers": headers}
            if method != "GET":
                if path.startswith("/api/"):
                    kwargs["json"] = BODIES.get(endpoint, {})
                else:
                    kwargs["data"] = {"csrf_token": csrf}
            response = client.open(path, method=method, **kwargs)
            want = expected_status(endpoint, principal)
            status = response.status_code
            if want == "ok":
                good = status < 500 and status not in (401, 403) and not (
                    status == 302 and "/admin/login" in response.headers.get("Location", ""))
            elif want == "login":
                good = status == 302 and response.headers["Location"].startswith("/admin/login")
            else:
                good = status == int(want)
                if path.startswith("/api/"):
                    good = good and response.is_json and "error" in response.json
                else:
                    good = good and "Not allowed" in response.get_data(as_text=True)
            if not good:
                failures.append(f"{method} {path} as {principal}: {status}, expected {want}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def queued(monkeypatch):
    from workers import tasks

    class Result:
        id = "task-id"

    calls = []
    monkeypatch.setattr(tasks.fine_tune_models, "apply_async", lambda args=None, **kw: calls.append(args) or Result())
    return calls


def test_expired_and_revoked_tokens_are_refused_with_json_everywhere(client, staff):
    for name, reason in (("expired token", "expired"), ("revoked token", "revoked")):
        headers = {"Authorization": f"Bearer {staff[name]}"}
        for path in ("/api/v1/tokens", "/api/v1/stats", "/api/v1/me"):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (name, path)
            assert reason in response.json["error"]
    assert client.get("/api/v1/stats", headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_a_token_writes_only_within_its_scopes(client, staff, canvas_drawings):
    drawing = canvas_drawings[0]
    body = {"image": drawing.data_url, "label": drawing.label}
    read = {"Authorization": f"Bearer {staff['read token']}"}
    contribute = {"Authorization": f"Bearer {staff['contribute token']}"}
    refused = client.post("/api/v1/drawings", json=body, headers=read)
    assert refused.status_code == 403 and "contribute" in refused.json["error"]
    assert client.post("/api/v1/predictions", json={"image": drawing.data_url}, headers=read).status_code == 200
    assert client.post("/api/v1/drawings", json=body, headers=contribute).status_code == 201


def test_a_disabled_account_s_tokens_stop_working(app, client, staff, runner):
    headers = {"Authorization": f"Bearer {staff['admin token']}"}
    assert client.get("/api/v1/tokens", headers=headers).status_code == 200
    assert runner.invoke(args=["users", "disable", "root"]).exit_code == 0
    assert client.get("/api/v1/tokens", headers=headers).status_code == 401


def test_a_reviewer_s_token_cannot_be_given_the_admin_scope(app, staff):
    from webapp.errors import ServiceError

    with pytest.raises(ServiceError, match="does not allow"):
        make_token(app, "rita", "rita-admin", ["admin"])


def test_a_demoted_admin_s_admin_token_loses_its_admin_rights(app, client, staff):
    headers = {"Authorization": f"Bearer {staff['admin token']}"}
    with app.app_context():
        db.session.scalar(select(User).where(User.username == "root")).role = "reviewer"
        db.session.commit()
    assert client.get("/api/v1/tokens", headers=headers).status_code == 403
    assert client.get("/api/v1/dataset/export?format=npz", headers=headers).status_code == 200


def test_tokens_through_the_api_create_list_revoke(client, staff):
    admin = {"Authorization": f"Bearer {staff['admin token']}"}
    created = client.post("/api/v1/tokens", headers=admin,
                          json={"name": "ci-upload", "scopes": ["contribute"], "expires_days": 7,
                                "contribute_limit": "1000/minute"})
    assert created.status_code == 201, created.json
    assert created.headers["Cache-Control"] == "no-store"
    secret, token_id = created.json["token"], created.json["id"]
    assert created.json["scopes"] == ["contribute"] and created.json["user"] == "root"
    listing = client.get("/api/v1/tokens", headers=admin).json["items"]
    listed = next(item for item in listing if item["name"] == "ci-upload")
    assert "token" not in listed and secret not in str(listing)  # the secret is shown once
    mine = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/stats", headers=mine).status_code == 200
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=admin).json["active"] is False
    assert client.get("/api/v1/stats", headers=mine).status_code == 401


@pytest.mark.parametrize("body, code", [
    ({"name": "x", "scopes": ["superuser"]}, "invalid_scopes"),
    ({"name": "x", "scopes": []}, "invalid_scopes"),
    ({"name": "x y", "scopes": ["read"]}, "invalid_name"),
    ({"name": "x", "scopes": ["read"], "expires_days": 0}, "invalid_expires_days"),
    ({"name": "x", "scopes": ["read"], "expires_days": "30"}, "invalid_expires_days"),
    ({"name": "x", "scopes": ["read"], "expires_days": True}, "invalid_expires_days"),
    ({"name": "x", "scopes": ["read"], "predict_limit": "lots"}, "invalid_predict_limit"),
    ({"name": "t-read", "scopes": ["read"]}, "exists"),
    ({"name": "x", "scopes": ["read"], "user": "nobody"}, "not_found"),
])
def test_bad_token_requests_are_clear_4xx(client, staff, body, code):
    response = client.post("/api/v1/tokens", json=body, headers={"Authorization": f"Bearer {staff['admin token']}"})
    assert 400 <= response.status_code < 500 and response.json["code"] == code, response.json


def test_tokens_from_the_command_line(app, runner, staff):
    result = runner.invoke(args=["tokens", "create", "nightly", "--user", "rita", "--scope", "review",
                                 "--expires-days", "30"])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(args=["tokens", "list"]).output
    assert re.search(r"nightly\s+rita\s+review\s+expires \d{4}-\d\d-\d\d\s+active", listing), listing
    assert "expired" in listing and "revoked" in listing
    assert runner.invoke(args=["tokens", "revoke", "nightly"]).exit_code == 0
    assert re.search(r"nightly .* revoked", runner.invoke(args=["tokens", "list"]).output)
    refused = runner.invoke(args=["tokens", "create", "too-much", "--user", "rita", "--scope", "admin"])
    assert refused.exit_code != 0 and "does not allow" in refused.output


def test_users_from_the_command_line(app, runner, client, staff):
    assert sign_in(client, "rita").status_code == 302
    result = runner.invoke(args=["users", "reset-password", "rita", "--password", "another long one"])
    assert result.exit_code == 0, result.output
    assert client.get("/admin/review").status_code == 302  # that session ended
    assert sign_in(client, "rita", "another long one").status_code == 302
    assert runner.invoke(args=["users", "create", "rita", "--password", PASSWORD]).exit_code != 0
    short = runner.invoke(args=["users", "create", "sam", "--password", "short"])
    assert short.exit_code != 0 and "8" in short.output


def test_a_reviewer_signs_in_to_the_review_queue_and_sees_only_their_pages(client, staff):
    response = sign_in(client, "rita")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/review"
    page = client.get("/admin/review").get_data(as_text=True)
    navigation = set(re.findall(r'data-nav="([a-z]+)"', page))
    assert {"review", "dataset"} <= navigation
    assert not navigation & {"dashboard", "accounts", "tokens", "audit"}
    assert "/activate" not in page


def _form(client, path, **fields):
    csrf = csrf_from(client.get("/admin/").get_data(as_text=True))
    return client.post(path, data={"csrf_token": csrf, **fields})


def test_admin_pages_create_disable_and_reset_accounts(app, client, staff):
    reviewer = app.test_client()
    assert sign_in(reviewer, "rita").status_code == 302
    assert sign_in(client, "root").status_code == 302
    assert _form(client, "/admin/accounts", username="sam", role="reviewer", password=PASSWORD).status_code == 302
    with app.app_context():
        sam = db.session.scalar(select(User).where(User.username == "sam"))
        rita_id = db.session.scalar(select(User.id).where(User.username == "rita"))
        root_id = db.session.scalar(select(User.id).where(User.username == "root"))
        assert sam.role == "reviewer"
    refused = _form(client, "/admin/accounts", username="sam", role="reviewer", password=PASSWORD)
    assert refused.status_code == 409 and "already" in refused.get_data(as_text=True)
    assert _form(client, "/admin/accounts", username="eve", role="owner", password=PASSWORD).status_code == 400
    assert _form(client, f"/admin/accounts/{root_id}/disable").status_code == 400  # not oneself
    # A new password ends the reviewer's session; disabling refuses the new one too.
    assert _form(client, f"/admin/accounts/{rita_id}/password", password="short").status_code == 400
    assert reviewer.get("/admin/review").status_code == 200
    assert _form(client, f"/admin/accounts/{rita_id}/password", password="a new password").status_code == 302
    assert reviewer.get("/admin/review").status_code == 302
    assert sign_in(reviewer, "rita", "a new password").status_code == 302
    assert _form(client, f"/admin/accounts/{rita_id}/disable").status_code == 302
    assert reviewer.get("/admin/review").status_code == 302
    assert sign_in(reviewer, "rita", "a new password").status_code == 401
    assert _form(client, f"/admin/accounts/{rita_id}/enable").status_code == 302
    assert sign_in(reviewer, "rita", "a new password").status_code == 302


def test_admin_pages_show_a_new_token_once_and_revoke_it(app, client, staff):
    assert sign_in(client, "root").status_code == 302
    response = _form(client, "/admin/tokens", name="uploader", user="rita", scopes="contribute", expires_days="5")
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-token-secret">([^<]+)<', response.get_data(as_text=True)).group(1)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert secret not in client.get("/admin/tokens").get_data(as_text=True)
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.name == "uploader"))
        assert token.scope_list == ["contribute"] and token.user.username == "rita"
        assert timedelta(days=4) < token.expires_at.replace(tzinfo=None) - utcnow().replace(tzinfo=None) <= timedelta(days=5)
    assert _form(client, f"/admin/tokens/{token.id}/revoke").status_code == 302
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    for bad in ({"name": "b", "user": "rita", "scopes": "admin"}, {"name": "b", "user": "rita", "scopes": "read",
                                                                  "expires_days": "²"}):
        assert _form(client, "/admin/tokens", **bad).status_code == 400


def test_new_tokens_expire_after_the_default_days(app, staff):
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.name == "t-read"))
        lifetime = token.expires_at.replace(tzinfo=None) - token.created_at.replace(tzinfo=None)
        assert abs(lifetime - timedelta(days=app.config["TOKEN_DEFAULT_DAYS"])) < timedelta(minutes=1)
