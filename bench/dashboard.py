"""How fast the admin dashboard renders with a big site: 50,000 drawings and 100 model versions.

    python -m bench.dashboard [--drawings 50000] [--versions 100] [--requests 30] [--database-url URL]

Fills a throwaway database (SQLite in a temporary folder by default; a PostgreSQL URL is
emptied first, so point it at a scratch database) with drawings of every source and status,
two predictions each, ratings for the feedback ones, versions and runs; signs in as an admin
and times GET /admin/ (and the review queue and dataset browser) through the WSGI app. Prints
p50/p95 and checks the floor from issue #5: the dashboard renders in < 300 ms.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

from bench.harness import print_floors

FLOOR_MS = 300.0


def runs_and_versions(rng: random.Random, now: datetime, versions: int) -> tuple[list[dict], list[dict]]:
    """Training runs, and ``versions`` model versions (half each network), one a day."""
    runs = [{"id": str(uuid.uuid4()), "status": rng.choice(["succeeded", "rejected", "failed"]), "trigger": "auto",
             "progress": {"percent": 100}, "result": {}, "attempts": 1,
             "created_at": now - timedelta(days=60 - i)} for i in range(versions // 2)]
    rows = []
    for name in ("fnn", "cnn"):
        for version in range(1, versions // 2 + 1):
            rows.append({"name": name, "version": version, "parent_version": version - 1 or None,
                         "status": "active" if version == versions // 2 else rng.choice(["retired", "rejected"]),
                         "object_prefix": f"models/{name}/v{version}/", "onnx_sha256": "0" * 64,
                         "metrics": {"mnist_test_accuracy": 0.99 + rng.random() / 200,
                                     "holdout_accuracy": 0.97 + rng.random() / 50, "holdout_size": 2000},
                         "manifest": {}, "samples_used": rng.randint(100, 5000),
                         "training_run_id": runs[version - 1]["id"] if version > 1 else None,
                         "created_at": now - timedelta(days=60 - version), "status_reason": "bench"})
    return runs, rows


def fill(app, *, drawings: int, versions: int, seed: int) -> None:
    from sqlalchemy import insert, text

    from webapp.extensions import db
    from webapp.models import Drawing, ModelVersion, Prediction, Rating, TrainingRun

    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    with app.app_context():
        for table in ("ratings", "predictions", "drawings", "model_versions", "training_runs", "api_tokens", "users"):
            db.session.execute(text(f"DELETE FROM {table}"))
        runs, rows = runs_and_versions(rng, now, versions)
        db.session.execute(insert(TrainingRun), runs)
        db.session.execute(insert(ModelVersion), rows)
        batch = 5000
        for start in range(0, drawings, batch):
            drawing_rows, prediction_rows, rating_rows = [], [], []
            for _ in range(start, min(drawings, start + batch)):
                drawing_id = str(uuid.uuid4())
                label = rng.randrange(10)
                source = rng.choices(["contribution", "prediction", "feedback"], [5, 3, 2])[0]
                status = rng.choices(["pending", "confirmed", "rejected"], [3, 6, 1])[0] if source != "prediction" \
                    else "pending"
                created = now - timedelta(minutes=rng.randrange(60 * 24 * 60))
                drawing_rows.append({
                    "id": drawing_id, "created_at": created, "source": source,
                    "label": None if source == "prediction" else label, "status": status,
                    "object_key": f"drawings/{drawing_id[:2]}/{drawing_id}.png", "content_type": "image/png",
                    "sha256": "0" * 64, "size_bytes": 1000, "width": 280, "height": 280, "pixels": bytes(784),
                    "client_id": f"client-{rng.randrange(500)}", "holdout": status == "confirmed" and rng.random() < 0.2,
                    "confirmed_at": created if status == "confirmed" else None, "not_digit": rng.random() < 0.01})
                # The version that was active when the drawing came in: one a day, like the versions.
                serving = max(1, min(versions // 2, 60 - (now - created).days))
                for name in ("fnn", "cnn"):
                    guess = label if rng.random() < 0.97 else rng.randrange(10)
                    prediction_rows.append({"drawing_id": drawing_id, "model_name": name,
                                            "model_version": serving, "label": guess,
                                            "confidence": 0.9, "probabilities": [0.1] * 10, "latency_ms": 0.3,
                                            "created_at": created})
                if source == "feedback":
                    rating_rows.append({"drawing_id": drawing_id, "label": label, "client_id": "bench",
                                        "created_at": created})
            db.session.execute(insert(Drawing), drawing_rows)
            db.session.execute(insert(Prediction), prediction_rows)
            if rating_rows:
                db.session.execute(insert(Rating), rating_rows)
        db.session.commit()


def timed(client, path: str, requests: int) -> list[float]:
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=50_000)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from flask_migrate import upgrade

    from webapp import create_app

    with tempfile.TemporaryDirectory(prefix="inkling-dashboard-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.sqlite"
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": tmp, "LOCAL_STORAGE_PATH": f"{tmp}/objects",
                          "MODELS_PATH": f"{tmp}/models", "MIGRATIONS": True})
        with app.app_context():
            upgrade()
        started = time.perf_counter()
        fill(app, drawings=args.drawings, versions=args.versions, seed=args.seed)
        with app.app_context():  # as a web process started on a full database would
            from webapp.extensions import db

            db.engine.dispose()
        print(f"database: {url.split('@')[-1] if args.database_url else 'SQLite (temporary file)'}")
        print(f"filled with {args.drawings:,} drawings, {2 * args.drawings:,} predictions, "
              f"{args.versions} versions in {time.perf_counter() - started:.1f} s")
        app.test_cli_runner().invoke(args=["users", "create-admin", "bench", "--password", "bench password"])
        client = app.test_client()
        page = client.get("/admin/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        assert client.post("/admin/login", data={"username": "bench", "password": "bench password",
                                                 "csrf_token": token}).status_code == 302
        print(f"\n{'page':<34}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
        results = {}
        for path in ("/admin/", "/admin/review", "/admin/review?disagree=1", "/admin/dataset", "/admin/dataset?page=300"):
            timed(client, path, 2)  # warm: templates compiled, connections open
            samples = sorted(timed(client, path, args.requests))
            results[path] = samples
            p95 = samples[min(len(samples) - 1, int(0.95 * len(samples)))]
            print(f"{path:<34}{statistics.median(samples):>9.1f}{p95:>9.1f}{samples[-1]:>9.1f}")
        dashboard = results["/admin/"]
        p95 = dashboard[min(len(dashboard) - 1, int(0.95 * len(dashboard)))]
        return print_floors("Floor (issue #5)", [
            (f"dashboard < {FLOOR_MS:.0f} ms with {args.drawings:,} drawings and {args.versions} versions: "
             f"p95 {p95:.1f} ms", p95 < FLOOR_MS)])


if __name__ == "__main__":
    raise SystemExit(main())
