"""Abuse and browser protections: the real client address behind Heroku's router, rate limits, headers."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

# The pages load scripts and styles from this site only; data: images are the previews the
# API returns and Bootstrap's own icons.
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": ["'self'", "data:"],
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def init_security(app: Flask) -> None:
    from flask_talisman import Talisman

    from webapp.extensions import limiter

    hops = app.config["PROXY_HOPS"]
    if hops:
        # Heroku's router appends the address it saw to X-Forwarded-For; only that last entry
        # is trusted, so a client that sends its own header gains nothing.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0)
    limiter.init_app(app)
    Talisman(app, force_https=app.config["FORCE_HTTPS"], strict_transport_security=app.config["FORCE_HTTPS"],
             strict_transport_security_max_age=365 * 24 * 3600, session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
             session_cookie_http_only=True, session_cookie_samesite="Lax",
             content_security_policy=CONTENT_SECURITY_POLICY, frame_options="DENY", referrer_policy="same-origin",
             # The health check is called over plain HTTP by Heroku and by prod-smoke.
             force_https_permanent=True)
    app.view_functions["health.healthz"].talisman_view_options = {"force_https": False}

