"""Configuration, read from the environment in this one place (12-factor)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from training import instance_path

# Keys anyone can read: this project's old default, and the placeholders of Flask's docs,
# tutorials and templates. A session signed with one can be forged for any user.
PUBLIC_SECRET_KEYS = frozenset(key.lower() for key in {
    "dev-only-inkling-secret", "dev", "development", "secret", "secret-key", "secret_key", "secretkey",
    "changeme", "change-me", "change_me", "changethis", "please-change-me", "your-secret-key",
    "your_secret_key", "super secret key", "supersecretkey", "mysecretkey", "my-secret-key", "test",
    "testing", "default", "flask", "inkling", "_5#y2L\"F4Q8z\n\xec]/",
    "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",  # Flask's quickstart
})
# Shorter keys can be guessed offline from one signed cookie.
MIN_SECRET_LENGTH = 24
MAKE_SECRET = "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
ENVIRONMENTS = ("development", "production")
# The largest upload, as decoded bytes: a canvas PNG is a few KB, a phone photo a few MB.
MAX_IMAGE_BYTES = 2 * 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """The environment asks for something unsafe or impossible."""


def database_url(raw: str | None, instance: Path) -> str:
    if not raw:
        return f"sqlite:///{instance / 'inkling.sqlite'}"
    # Heroku still hands out postgres:// URLs, which SQLAlchemy 2 no longer accepts; and the
    # psycopg (3) driver is the one installed.
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def is_public_secret(key: str) -> bool:
    return key.strip().lower() in PUBLIC_SECRET_KEYS


def secret_problem(secret: str | None) -> str | None:
    """Why ``secret`` must not sign sessions, if it must not: it is public or guessable."""
    if secret is None:
        return None
    if is_public_secret(secret):
        return ("SECRET_KEY is a published example value, with which anyone can forge an admin's session: "
                "unset it (outside production a random key is then made and kept in instance/secret_key) "
                f"or set a long random string, e.g. {MAKE_SECRET}")
    if len(secret) < MIN_SECRET_LENGTH:
        return f"SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters and can be guessed: set e.g. {MAKE_SECRET}"
    return None


def check_production(environ, *, secret: str | None) -> None:
    """Refuse settings that only make sense on one machine; every problem is named at once.

    A Heroku dyno's disk is ephemeral and private to it: a SQLite database, a local object
    store or a SQLite broker there would lose data at the next restart and never be seen by
    the other dynos. ALLOW_SQLITE=1 and ALLOW_LOCAL_STORAGE=1 are for a single-machine install.
    """
    problems = []
    # Every dyno has its own disk: a key made on one would not open the others' sessions.
    if secret is None:
        problems.append(f"SECRET_KEY must be set in production (a long random string, e.g. {MAKE_SECRET})")
    elif problem := secret_problem(secret):
        problems.append(problem)
    allow_sqlite = _bool(environ.get("ALLOW_SQLITE"))
    if not allow_sqlite and database_url(environ.get("DATABASE_URL"), Path("instance")).startswith("sqlite"):
        problems.append("DATABASE_URL must name a server database (PostgreSQL) in production, not SQLite; "
                        "set ALLOW_SQLITE=1 to run on one machine anyway")
    if not allow_sqlite and not environ.get("REDIS_URL"):
        problems.append("REDIS_URL must be set in production: without it the task queue is a SQLite file "
                        "that other dynos cannot see; set ALLOW_SQLITE=1 to run on one machine anyway")
    if not environ.get("S3_BUCKET") and not _bool(environ.get("ALLOW_LOCAL_STORAGE")):
        problems.append("S3_BUCKET must be set in production: the local object store keeps images and "
                        "models on the dyno's disk, which is lost on restart; set ALLOW_LOCAL_STORAGE=1 "
                        "to use a local folder anyway")
    if problems:
        raise ConfigError("INKLING_ENV=production refuses to start:\n  - " + "\n  - ".join(problems))


def retention(raw: str | None, *, default: timedelta) -> timedelta:
    """A duration from the environment: days ("7", "0.5"), or with a unit ("7d", "12h", "30m")."""
    if raw is None or not raw.strip():
        return default
    value, unit = raw.strip().lower(), "d"
    if value[-1] in "dhm":
        value, unit = value[:-1], value[-1]
    try:
        amount = float(value)
    except ValueError:
        amount = -1.0
    if not 0 < amount < 100_000:
        raise ConfigError(f"PREDICTION_RETENTION must be a positive number of days, or end in d, h or m; not {raw!r}")
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})


def rate_limit_storage(environ) -> str:
    """Where rate-limit counts live: Redis when there is one (all workers share it), else memory.

    Heroku's Key-Value Store is rediss:// with a self-signed certificate; like the broker, the
    limiter verifies it only when REDIS_TLS_VERIFY says so, or every check would fail (and
    quietly fall back to counting per worker).
    """
    explicit = environ.get("RATELIMIT_STORAGE_URI")
    if explicit:
        return explicit
    redis_url = environ.get("REDIS_URL")
    if not redis_url:
        return "memory://"
    if redis_url.startswith("rediss://") and not _bool(environ.get("REDIS_TLS_VERIFY")) \
            and "ssl_cert_reqs=" not in redis_url:
        return redis_url + ("&" if "?" in redis_url else "?") + "ssl_cert_reqs=none"
    return redis_url


def from_environment(environ=os.environ) -> dict:
    """The app's settings as a dict for ``app.config.from_mapping``."""
    instance = instance_path(environ)
    env = environ.get("INKLING_ENV", "development")
    # Unset: create_app makes one and keeps it in the instance folder (webapp/secret_key.py).
    secret = environ.get("SECRET_KEY") or None
    if env not in ENVIRONMENTS:  # a typo such as "prod" must not quietly mean development
        raise ConfigError(f"INKLING_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    if env == "production":
        check_production(environ, secret=secret)
    elif problem := secret_problem(secret):
        raise ConfigError(problem)
    return (_process_settings(environ, env=env, secret=secret, instance=instance)
            | _storage_settings(environ, instance) | _serving_settings(environ) | _learning_settings(environ)
            | _web_settings(environ, env) | _rate_limit_settings(environ) | _privacy_settings(environ, instance))


def _process_settings(environ, *, env: str, secret: str | None, instance: Path) -> dict:
    """Environment, secret, logging, the database and the broker."""
    log_format = environ.get("LOG_FORMAT") or ("json" if env == "production" else "text")
    if log_format not in ("json", "text"):
        raise ConfigError("LOG_FORMAT must be 'json' or 'text'")
    return {
        "INKLING_ENV": env,
        "SECRET_KEY": secret,
        # JSON lines on stdout in production, for Heroku's log drains; text on a terminal.
        "LOG_FORMAT": log_format,
        "LOG_LEVEL": environ.get("LOG_LEVEL", "INFO").upper(),
        "INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URI": database_url(environ.get("DATABASE_URL"), instance),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": environ.get("REDIS_URL") or None,
        "REDIS_TLS_VERIFY": _bool(environ.get("REDIS_TLS_VERIFY")),
    }


def _storage_settings(environ, instance: Path) -> dict:
    """Where images and model versions live."""
    return {
        # Object storage: S3 when a bucket is named, else a local folder.
        "S3_BUCKET": environ.get("S3_BUCKET") or None,
        "S3_ENDPOINT_URL": environ.get("S3_ENDPOINT_URL") or None,
        "S3_REGION": environ.get("S3_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "S3_PREFIX": environ.get("S3_PREFIX", ""),
        # Heroku's router gives up after 30 s; S3 calls must fail well before that.
        "S3_CONNECT_TIMEOUT": float(environ.get("S3_CONNECT_TIMEOUT", 2)),
        "S3_READ_TIMEOUT": float(environ.get("S3_READ_TIMEOUT", 5)),
        "S3_MAX_ATTEMPTS": int(environ.get("S3_MAX_ATTEMPTS", 2)),
        "LOCAL_STORAGE_PATH": environ.get("LOCAL_STORAGE_PATH") or str(instance / "objects"),
        "MODELS_PATH": environ.get("MODELS_PATH") or str(instance / "models"),
    }


def _serving_settings(environ) -> dict:
    """Uploads, predictions and pages."""
    max_image_bytes = int(environ.get("MAX_IMAGE_BYTES", MAX_IMAGE_BYTES))
    return {
        # Base64 adds a third; JSON framing a little more.
        "MAX_IMAGE_BYTES": max_image_bytes,
        "MAX_CONTENT_LENGTH": int(environ.get("MAX_CONTENT_LENGTH", max_image_bytes * 4 // 3 + 64 * 1024)),
        # The one larger body: an admin's dataset file to import (streamed to a temporary file).
        "IMPORT_MAX_BYTES": int(environ.get("IMPORT_MAX_BYTES", 1 << 30)),
        # Store answered predictions after responding (see services.predict_drawing).
        "PREDICTION_WRITE_BEHIND": _bool(environ.get("PREDICTION_WRITE_BEHIND"), True),
        "MODEL_REFRESH_SECONDS": float(environ.get("MODEL_REFRESH_SECONDS", 2)),
        "PAGE_SIZE": int(environ.get("PAGE_SIZE", 50)),
    }


def _learning_settings(environ) -> dict:
    """Which drawings train, and how runs are started, judged and retried."""
    if environ.get("CONFIRM_POLICY", "review") not in ("review", "agreement"):
        raise ConfigError("CONFIRM_POLICY must be 'review' or 'agreement'")
    return {
        # Continual learning (issue #4).
        "CONFIRM_POLICY": environ.get("CONFIRM_POLICY", "review"),
        "AUTO_CONFIRM": _bool(environ.get("AUTO_CONFIRM")),
        "AGREEMENT_CONFIDENCE": float(environ.get("AGREEMENT_CONFIDENCE", 0.9)),
        "HOLDOUT_FRACTION": float(environ.get("HOLDOUT_FRACTION", 0.2)),
        # With this many contributors the holdout is a share of contributors (it then measures
        # writers no version trained on); with fewer, a share of each digit's drawings.
        "HOLDOUT_MIN_CONTRIBUTORS": int(environ.get("HOLDOUT_MIN_CONTRIBUTORS", 20)),
        # No contributor's drawings make more than this share of a run's new batch (the rest wait
        # for later runs), so that no one writer steers what the networks learn.
        "CONTRIBUTOR_SHARE": float(environ.get("CONTRIBUTOR_SHARE", 0.25)),
        "RETRAIN_EVERY": int(environ.get("RETRAIN_EVERY", 100)),
        # A new label set's first run waits until every class has this many confirmed training drawings.
        "MIN_PER_CLASS": int(environ.get("MIN_PER_CLASS", 30)),
        # A first run's networks must read the set's holdout better than chance (1/classes) at this
        # one-sided binomial significance to be activated.
        "CHANCE_SIGNIFICANCE": float(environ.get("CHANCE_SIGNIFICANCE", 0.01)),
        "MNIST_TOLERANCE": float(environ.get("MNIST_TOLERANCE", 0.002)),
        "FINETUNE_EPOCHS": int(environ.get("FINETUNE_EPOCHS", 4)),
        "FINETUNE_MNIST_MINIMUM": int(environ.get("FINETUNE_MNIST_MINIMUM", 3000)),
        "FINETUNE_SEED": int(environ.get("FINETUNE_SEED", 0)),
        # A run with no progress for this long is failed (its worker was killed or lost).
        "STALE_RUN_SECONDS": float(environ.get("STALE_RUN_SECONDS", 900)),
        "MAX_RUN_ATTEMPTS": int(environ.get("MAX_RUN_ATTEMPTS", 3)),
        # A worker whose store has no reference set for its code builds one (a minute, once).
        "REFERENCE_BUILD": _bool(environ.get("REFERENCE_BUILD"), True),
        # A client whose labels the CNN confidently contradicts this often (over at least
        # QUARANTINE_MIN_LABELS drawings) is quarantined: nothing of theirs is confirmed by the
        # policy, and what it already confirmed goes back to review.
        "QUARANTINE_MIN_LABELS": int(environ.get("QUARANTINE_MIN_LABELS", 10)),
        "QUARANTINE_DISAGREEMENT": float(environ.get("QUARANTINE_DISAGREEMENT", 0.3)),
        # At most this many of one client's drawings confirmed by the policy per day.
        "AUTO_CONFIRM_DAILY_CAP": int(environ.get("AUTO_CONFIRM_DAILY_CAP", 100)),
    }


def _web_settings(environ, env: str) -> dict:
    """Cookies, assets, proxies and HTTPS."""
    return {
        "BOOTSTRAP_SERVE_LOCAL": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(environ.get("SESSION_COOKIE_SECURE"), env == "production"),
        # Abuse (issue #7). Heroku's router is one proxy hop; elsewhere nothing is in front.
        "PROXY_HOPS": int(environ.get("PROXY_HOPS", 1 if env == "production" else 0)),
        # HTTPS redirect and HSTS; a loopback production run (make prod-smoke) turns them off.
        "FORCE_HTTPS": _bool(environ.get("FORCE_HTTPS"), env == "production"),
    }


def _rate_limit_settings(environ) -> dict:
    """Where rate limits are counted, and how much each kind of caller may send."""
    return {
        "RATELIMIT_ENABLED": _bool(environ.get("RATELIMIT_ENABLED"), True),
        "RATELIMIT_STORAGE_URI": rate_limit_storage(environ),
        # A Redis hiccup must not take the site down: count in memory until it is back.
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATE_LIMIT_PREDICTIONS": environ.get("RATE_LIMIT_PREDICTIONS", "120/minute"),
        "RATE_LIMIT_CONTRIBUTIONS": environ.get("RATE_LIMIT_CONTRIBUTIONS", "30/minute;500/day"),
        "RATE_LIMIT_FEEDBACK": environ.get("RATE_LIMIT_FEEDBACK", "60/minute"),
        # API tokens are counted per token, not per address, with their own limits (a token may
        # carry its own overrides); a token's scopes still decide what it may do.
        "TOKEN_PREDICT_LIMIT": environ.get("TOKEN_PREDICT_LIMIT", "1200/minute"),
        "TOKEN_CONTRIBUTE_LIMIT": environ.get("TOKEN_CONTRIBUTE_LIMIT", "300/minute;20000/day"),
        "TOKEN_DEFAULT_DAYS": int(environ.get("TOKEN_DEFAULT_DAYS", 90)),
        # Failed sign-ins only: the eleventh wrong password in 15 minutes gets 429.
        "RATE_LIMIT_LOGIN": environ.get("RATE_LIMIT_LOGIN", "10 per 15 minutes"),
    }


def _privacy_settings(environ, instance: Path) -> dict:
    """How long unrated predictions are kept, and who may read drawings."""
    prune_every = float(environ.get("PRUNE_EVERY_SECONDS", 3600))
    return {
        # Unrated, unflagged predictions are deleted once this old; what people contribute, rate
        # or flag is kept (webapp/retention.py).
        "PREDICTION_RETENTION": retention(environ.get("PREDICTION_RETENTION"), default=timedelta(days=7)),
        "PRUNE_BATCH_SIZE": int(environ.get("PRUNE_BATCH_SIZE", 1000)),
        # Drawings are private: their owner and reviewers see them. 1 shows contributed and rated
        # ones (never unrated predictions) to anyone (webapp/visibility.py).
        "PUBLIC_DATASET": _bool(environ.get("PUBLIC_DATASET")),
        # The worker runs Celery beat (`worker -B`), which sends the prune this often.
        "CELERY": {
            "beat_schedule": {"prune-expired-predictions": {
                "task": "inkling.prune_expired_predictions", "schedule": prune_every,
                # Stuck behind a long training run, one prune is enough: later ones expire.
                "options": {"expires": prune_every}}},
            "beat_schedule_filename": str(instance / "celerybeat-schedule"),
        },
    }
