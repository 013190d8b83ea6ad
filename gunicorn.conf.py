"""gunicorn settings for web dynos (Procfile `web`) and `make prod-smoke`; tuned by env vars only."""

from __future__ import annotations

import os

# Heroku says where to listen in $PORT and how many workers fit the dyno in WEB_CONCURRENCY
# (the Python buildpack sets it from the dyno's memory). A worker loads both networks with
# ONNX Runtime and no TensorFlow, small enough that a 512 MB Basic dyno takes two (its
# memory is measured by `make prod-smoke`; README, Figures).
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", 2))
# Threads overlap the waits on S3 and PostgreSQL. A prediction is CPU work under one GIL, so
# threads beyond two only share a core more finely and lengthen the tail (README, Performance);
# further requests wait in the listen queue, first come first served.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 2))
# A worker takes a connection only when it has a thread free, and closes it after the response:
# kept-alive connections stay with the worker that accepted them, so one worker ends up holding
# most of them (capped at one core by its GIL) while the other idles. A fresh connection goes
# to whichever worker is free. Heroku's router keeps the clients' connections alive on its
# side, so clients lose nothing.
worker_connections = threads
keepalive = 0
# Heroku's router drops a request after 30 s, so a worker stuck longer is of no use to anyone;
# and a dyno gets 30 s between SIGTERM and SIGKILL, so in-flight requests get 25 to finish.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 25
# The app is created in each worker after the fork, never in the master: each worker opens
# its own database pool and S3 client, and loads its own ONNX sessions (neither survives a
# fork). The master imports this file and gunicorn, nothing else.
preload_app = False
# Heroku's router is the only way in and sets X-Forwarded-Proto; trust it from any address.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
# The router logs every request already (with its X-Request-ID); the app logs the rest.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# Heartbeat files on tmpfs: a slow disk must not get a healthy worker killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

if os.environ.get("INKLING_ENV") == "production" or os.environ.get("LOG_FORMAT") == "json":
    # gunicorn's own lines (boot, worker exits, timeouts) as JSON too, like the app's.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "webapp.logs.JsonFormatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
            "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }


def post_fork(server, worker) -> None:
    # The worker's main thread accepts connections and hands them to the threads, and needs the
    # GIL for it; at the default 5 ms switch interval it waits behind a running request while a
    # thread sits idle.
    import sys

    sys.setswitchinterval(0.0005)


def post_worker_init(worker) -> None:
    """Load the active models right after the fork, before the worker takes requests.

    The first request then does not pay for fetching and loading them; and if they cannot be
    loaded yet (no version imported, S3 down), the worker still starts and retries on demand.
    """
    app = worker.wsgi
    try:
        from webapp.registry import get_registry

        with app.app_context():
            versions = get_registry().snapshot().versions
        worker.log.info("worker %s: models loaded %s", worker.pid, versions)
    except Exception as exc:  # readiness (/healthz) reports it; requests retry the load
        worker.log.warning("worker %s: models not loaded yet: %s", worker.pid, exc)
    # The loaded app's objects live as long as the worker: out of the collector's sight, a full
    # collection no longer walks them while every request of the worker waits.
    import gc

    gc.freeze()


def worker_exit(server, worker) -> None:
    """Store the predictions already answered (write-behind) before the worker goes away."""
    app = getattr(worker, "wsgi", None)
    writer = getattr(app, "extensions", {}).get("inkling.writer") if app is not None else None
    if writer is None:
        return
    try:
        writer.flush(timeout=graceful_timeout - 5)
    except Exception as exc:
        server.log.error("worker %s: answered predictions not all stored: %s", worker.pid, exc)
