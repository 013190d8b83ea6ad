"""Abuse: rate limits keyed on the real client address and shared through Redis, security headers,
sign-in throttling, and a flood of wrong labels that never reaches training."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Drawing, LabelSet
from webapp.visitors import CLIENT_COOKIE, client_id_from_cookie

REDIS_URL = "redis://127.0.0.1:6379/12"  # test_celery uses db 11


@pytest.fixture
def limited(database_url, object_root, tmp_path, tiny_models):
    """The app with rate limits on, counted in memory, and small enough to reach quickly."""
    from tests.webapp.conftest import make_app, serve
    from webapp.extensions import limiter

    app = make_app(database_url, object_root, tmp_path, RATELIMIT_ENABLED=True,
                   RATE_LIMIT_CONTRIBUTIONS="3/minute", RATE_LIMIT_PREDICTIONS="4/minute")
    limiter.reset()
    yield from serve(app, tiny_models[0])
    limiter.reset()


def test_contributions_over_the_limit_get_429_with_retry_after(limited, canvas_drawings):
    client = limited.test_client()
    body = {"image": canvas_drawings[0].data_url, "label": canvas_drawings[0].label}
    assert [client.post("/api/v1/drawings", json=body).status_code for _ in range(3)] == [201] * 3
    refused = client.post("/api/v1/drawings", json=body)
    assert refused.status_code == 429
    assert refused.json["code"] == "rate_limited" and refused.json["error"]
    assert int(refused.headers["Retry-After"]) > 0
    with limited.app_context():
        assert db.session.scalar(select(func.count()).select_from(Drawing)) == 3


def test_a_forged_forwarded_for_gains_nothing_behind_one_proxy(app, database_url, object_root, tmp_path, tiny_models,
                                                               canvas_drawings):
    from tests.webapp.conftest import make_app, serve
    from webapp.extensions import limiter

    proxied = next(serve(make_app(database_url, object_root, tmp_path / "proxied", PROXY_HOPS=1,
                                  RATELIMIT_ENABLED=True, RATE_LIMIT_PREDICTIONS="4/minute"), tiny_models[0]))
    limiter.reset()
    client = proxied.test_client()
    body = {"image": canvas_drawings[0].data_url}
    # The router appends the address it saw (203.0.113.7); whatever the client wrote before it is ignored.
    statuses = [client.post("/api/v1/predictions", json=body,
                            headers={"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.7"}).status_code for i in range(6)]
    assert statuses == [200] * 4 + [429] * 2
    # Another real address has its own allowance.
    other = client.post("/api/v1/predictions", json=body, headers={"X-Forwarded-For": "203.0.113.8"})
    assert other.status_code == 200
    limiter.reset()


def test_limits_are_shared_by_every_worker_through_redis(database_url, object_root, tmp_path, tiny_models,
                                                         canvas_drawings):
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"Redis unavailable: {exc}")
    from tests.webapp.conftest import make_app

    # Two apps stand for two gunicorn workers: separate processes' memory, one Redis.
    apps = [make_app(database_url, object_root, tmp_path / f"w{i}", RATELIMIT_ENABLED=True,
                     RATELIMIT_STORAGE_URI=REDIS_URL, RATE_LIMIT_PREDICTIONS="3/minute") for i in range(2)]
    body = {"image": canvas_drawings[0].data_url}
    first, second = (app.test_client() for app in apps)
    from webapp.extensions import limiter

    limiter.reset()
    try:
        statuses = [first.post("/api/v1/predictions", json=body).status_code for _ in range(2)]
        statuses += [second.post("/api/v1/predictions", json=body).status_code for _ in range(2)]
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()
    assert statuses[:3] == [200, 200, 200] or statuses[:3] == [503, 503, 503]
    assert statuses[3] == 429


def test_ten_wrong_passwords_in_a_row_then_429(limited):
    import re

    client = limited.test_client()
    limited.test_cli_runner().invoke(args=["users", "create-admin", "root", "--password", "long enough"])
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    wrong = {"username": "root", "password": "guess", "csrf_token": token}
    assert [client.post("/admin/login", data=wrong).status_code for _ in range(10)] == [401] * 10
    refused = client.post("/admin/login", data={**wrong, "password": "long enough"})
    assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_security_headers_on_pages_and_api(client):
    for path in ("/", "/contribute", "/api/v1/models", "/admin/login"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_production_adds_hsts_and_secure_cookies(database_url, object_root, tmp_path, tiny_models):
    from tests.webapp.conftest import make_app

    app = make_app(database_url, object_root, tmp_path, FORCE_HTTPS=True, SESSION_COOKIE_SECURE=True, PROXY_HOPS=1)
    client = app.test_client()
    plain = client.get("/contribute", headers={"X-Forwarded-Proto": "http"})
    assert plain.status_code in (301, 302) and plain.headers["Location"].startswith("https://")
    secure = client.get("/admin/login", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert "max-age=31536000" in secure.headers["Strict-Transport-Security"]
    cookie = secure.headers.get("Set-Cookie", "")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # The health check answers over plain HTTP (routers and prod-smoke call it so).
    assert client.get("/healthz", headers={"X-Forwarded-Proto": "http"}).status_code in (200, 503)


@pytest.mark.parametrize("other_set_trains", [False, True])
def test_a_flood_of_wrong_labels_from_one_client_never_reaches_training(app, client, runner, canvas_drawings, mnist,
                                                                        other_set_trains):
    """With another label set's run started during the flood (``other_set_trains``), the drawings
    confirmed before it are recalled too: that run trains none of them."""
    from training.devset import generate

    from webapp.config import from_environment
    from webapp.models import TrainingRun, utcnow

    defaults = from_environment({})
    app.config.update(AUTO_CONFIRM=True, RETRAIN_EVERY=0, **{key: defaults[key] for key in (
        "QUARANTINE_MIN_LABELS", "QUARANTINE_DISAGREEMENT", "AUTO_CONFIRM_DAILY_CAP")})
    drawings = generate(mnist.x_test[:100], mnist.y_test[:100], per_variant=5, seed=3)[:500]
    # An honest contributor first: their drawings are confirmed as the policy says.
    honest = app.test_client()
    for drawing in drawings[:5]:
        assert honest.post("/api/v1/drawings", json={"image": drawing.data_url, "label": drawing.label}).status_code == 201
    for index, drawing in enumerate(drawings):
        if other_set_trains and index == 3:
            assert runner.invoke(args=["label-sets", "create", "flood-shapes", "--classes", "a,b"]).exit_code == 0
            with app.app_context():
                other = db.session.scalar(select(LabelSet.id).where(LabelSet.slug == "flood-shapes"))
                db.session.add(TrainingRun(label_set_id=other, status="running", started_at=utcnow()))
                db.session.commit()
        response = client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": (drawing.label + 1) % 10})
        assert response.status_code == 201
    with app.app_context():
        statuses = dict(db.session.execute(select(Drawing.status, func.count()).where(
            Drawing.client_id == client_id_from_cookie(client.get_cookie(CLIENT_COOKIE).value))
            .group_by(Drawing.status)).all())
        assert statuses == {"pending": len(drawings)}, statuses
        assert db.session.scalar(select(func.count()).select_from(Drawing).where(Drawing.status == "confirmed")) == 5


@pytest.mark.parametrize("environ, expected", [
    ({}, "memory://"),
    ({"REDIS_URL": "redis://h:6379/0"}, "redis://h:6379/0"),
    # Heroku's Key-Value Store: TLS with a self-signed certificate, verified only when asked.
    ({"REDIS_URL": "rediss://:p@h:6380"}, "rediss://:p@h:6380?ssl_cert_reqs=none"),
    ({"REDIS_URL": "rediss://:p@h:6380", "REDIS_TLS_VERIFY": "1"}, "rediss://:p@h:6380"),
    ({"REDIS_URL": "redis://h", "RATELIMIT_STORAGE_URI": "memcached://m:11211"}, "memcached://m:11211"),
])
def test_rate_limit_counts_live_in_redis_when_there_is_one(environ, expected):
    from webapp.config import rate_limit_storage

    assert rate_limit_storage(environ) == expected
