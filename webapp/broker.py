"""Celery, set up as in Flask's own example: tasks run inside the app context.

Every Celery setting of the deployment is here: how tasks are acknowledged, and that a worker
takes one training run at a time (the Procfile and `make run` do not repeat them).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from celery import Celery, Task
from flask import Flask


def broker_settings(config) -> dict:
    """Redis when REDIS_URL is set; otherwise SQLite files, so a laptop needs no broker server."""
    redis_url = config.get("REDIS_URL")
    if redis_url:
        settings = {"broker_url": redis_url, "result_backend": redis_url,
                    # An unacknowledged message comes back after this long; it must outlast the
                    # longest training run, or a second worker would start the same run.
                    "broker_transport_options": {"visibility_timeout": 4 * 3600}}
        if redis_url.startswith("rediss://"):
            # Heroku Key-Value Store presents a self-signed certificate; verification is opt-in.
            verify = ssl.CERT_REQUIRED if config.get("REDIS_TLS_VERIFY") else ssl.CERT_NONE
            settings["broker_use_ssl"] = {"ssl_cert_reqs": verify}
            settings["redis_backend_use_ssl"] = {"ssl_cert_reqs": verify}
        return settings
    instance = Path(config["INSTANCE_PATH"])
    return {"broker_url": f"sqla+sqlite:///{instance / 'broker.sqlite'}",
            "result_backend": f"db+sqlite:///{instance / 'celery-results.sqlite'}"}


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_settings(app.config),
        # A run whose worker dies (OOM, a dyno restart) goes back to the queue, not lost; the
        # run itself skips what an earlier delivery already published.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # A training run takes a whole dyno's memory: one at a time per worker.
        worker_concurrency=1,
        include=["workers.tasks"],
    )
    celery.conf.update(app.config.get("CELERY", {}))
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
