"""Prune N expired predictions on PostgreSQL + S3 (moto's server) while gunicorn serves requests.

    python bench/prune.py [--count 100000] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Fills a schema of its own with N expired unrated predictions (rows, two readings each, and
their objects in S3) plus drawings that must survive (contributed, rated, flagged, young),
starts gunicorn on that database and bucket, measures the p50 of a light request (GET
/api/v1/me) before and while `prune_expired()` runs, and checks that exactly the expired
drawings are gone, objects and rows together. Prints the figures; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import sys
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from bench.harness import Gunicorn, free_port, print_floors

BUCKET = "inkling-bench-prune"
KEPT_EACH = 250  # survivors of each kind: contributed, rated, flagged, young


def drawing_values(now, *, source: str, age: timedelta, not_digit: bool = False, label=None) -> dict:
    drawing_id = str(uuid.uuid4())
    return dict(id=drawing_id, created_at=now - age, source=source, label=label, status="pending",
                object_key=f"drawings/{drawing_id[:2]}/{drawing_id}.png", content_type="image/png",
                sha256="0" * 64, size_bytes=3, width=28, height=28, pixels=bytes(784), client_id="bench-client-000000",
                not_digit=not_digit, holdout=False)


def fill(app, count: int) -> tuple[set[str], set[str]]:
    """N expired predictions and the survivors: rows in batches, objects through 10 threads (boto3's pool size)."""
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Drawing, Prediction, Rating, utcnow
    from webapp.storage import get_store

    now = utcnow()
    expired = [drawing_values(now, source="prediction", age=timedelta(days=8 + index % 20)) for index in range(count)]
    kept = ([drawing_values(now, source="contribution", age=timedelta(days=30), label=1) for _ in range(KEPT_EACH)]
            + [drawing_values(now, source="feedback", age=timedelta(days=30), label=2) for _ in range(KEPT_EACH)]
            + [drawing_values(now, source="prediction", age=timedelta(days=30), not_digit=True)
               for _ in range(KEPT_EACH)]
            + [drawing_values(now, source="prediction", age=timedelta(days=3)) for _ in range(KEPT_EACH)])
    with app.app_context():
        store = get_store()
        rows = expired + kept
        for start in range(0, len(rows), 5000):
            chunk = rows[start:start + 5000]
            db.session.execute(insert(Drawing), chunk)
            db.session.execute(insert(Prediction), [
                dict(drawing_id=row["id"], model_name=name, model_version=1, label=3, confidence=0.9,
                     probabilities=[0.01] * 10, latency_ms=1.0) for row in chunk for name in ("fnn", "cnn")])
            db.session.commit()
        db.session.execute(insert(Rating), [dict(drawing_id=row["id"], label=2) for row in kept
                                            if row["source"] == "feedback"])
        db.session.commit()
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda row: store.put(row["object_key"], b"png", content_type="image/png"), rows))
    return {row["object_key"] for row in expired}, {row["object_key"] for row in kept}


def get_ms(server: Gunicorn, path: str) -> float:
    started = time.perf_counter()
    status, _ = server.request(path)
    if status != 200:
        raise RuntimeError(f"{path} answered {status}")
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer
    from sqlalchemy import create_engine, text

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    schema = f"bench_prune_{secrets.token_hex(4)}"
    admin_engine = create_engine(args.database_url)
    with admin_engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    instance = Path(f"/tmp/{schema}")
    instance.mkdir()
    env = {**os.environ, "DATABASE_URL": f"{args.database_url}?options=-csearch_path%3D{schema}",
           "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
           "INKLING_INSTANCE_PATH": str(instance), "SECRET_KEY": secrets.token_urlsafe(32),
           "RATELIMIT_ENABLED": "0", "S3_READ_TIMEOUT": "30"}
    os.environ.update({key: env[key] for key in ("DATABASE_URL", "S3_BUCKET", "S3_ENDPOINT_URL",
                                                 "INKLING_INSTANCE_PATH", "SECRET_KEY", "S3_READ_TIMEOUT")})
    try:
        return run(env, args.count)
    finally:
        with admin_engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin_engine.dispose()
        moto.stop()
        shutil.rmtree(instance, ignore_errors=True)


def run(env: dict, count: int) -> int:
    """Fill the database and bucket, then prune while gunicorn answers; the exit status."""
    import boto3

    from webapp import create_app
    from webapp.extensions import db

    boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    app = create_app()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    with app.app_context():
        db.create_all()
    started = time.perf_counter()
    expired_keys, kept_keys = fill(app, count)
    print(f"filled {len(expired_keys):,} expired predictions and {len(kept_keys):,} survivors "
          f"(rows and S3 objects) in {time.perf_counter() - started:.0f} s")
    # One worker, two threads: the smallest web dyno's share, without the model loading of gunicorn.conf.py.
    with Gunicorn(env, args=["--workers", "1", "--threads", "2"], healthy=False, workers=1) as server:
        result, elapsed, before, during = prune_while_serving(app, server)
    failures = leftovers(app, kept_keys)
    print(f"pruned {result.rows:,} rows and {result.objects:,} objects in {elapsed:.1f} s "
          f"({result.rows / elapsed:,.0f} drawings/s); stopped: {result.stopped}")
    print(f"GET /api/v1/me p50 {statistics.median(before):.1f} ms before ({len(before)} requests), "
          f"{statistics.median(during):.1f} ms during ({len(during)} requests, "
          f"p95 {statistics.quantiles(during, n=20)[-1]:.1f} ms)")
    return print_floors("Floors (issue #18)", [
        (f"{count:,} expired predictions pruned, objects and rows together", not failures and result.rows == count),
        ("contributed, rated, flagged and young drawings untouched" + (": " + "; ".join(failures) if failures else ""),
         not failures)])


def prune_while_serving(app, server: Gunicorn):
    """The prune's result and time, and a light request's times before and during it."""
    from webapp.retention import prune_expired

    before = [get_ms(server, "/api/v1/me") for _ in range(300)]
    during: list[float] = []
    done = threading.Event()

    def loop():
        while not done.is_set():
            during.append(get_ms(server, "/api/v1/me"))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    with app.app_context():
        started = time.perf_counter()
        result = prune_expired()
        elapsed = time.perf_counter() - started
    done.set()
    thread.join()
    return result, elapsed, before, during


def leftovers(app, kept_keys: set) -> list[str]:
    """What the prune left that it should have removed, or removed that it should have kept."""
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Drawing, Prediction, Rating
    from webapp.storage import get_store

    with app.app_context():
        rows = set(db.session.scalars(select(Drawing.object_key)))
        objects = {obj.key for obj in get_store().list("drawings/")}
        readings = db.session.scalar(select(func.count()).select_from(Prediction))
        ratings = db.session.scalar(select(func.count()).select_from(Rating))
    failures = []
    if rows != kept_keys:
        failures.append(f"rows: {len(rows - kept_keys)} expired left, {len(kept_keys - rows)} survivors lost")
    if objects != kept_keys:
        failures.append(f"objects: {len(objects - kept_keys)} expired left, {len(kept_keys - objects)} lost")
    if readings != 2 * len(kept_keys) or ratings != KEPT_EACH:
        failures.append(f"{readings} readings and {ratings} ratings left, expected {2 * len(kept_keys)} and {KEPT_EACH}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
