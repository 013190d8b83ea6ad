"""Dataset export: 50,000 confirmed drawings as .npz and as a zip of PNGs, through gunicorn on loopback.

    python -m bench.export [--rows 50000] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Fills a throwaway database (SQLite by default; with --database-url, a fresh schema in that
PostgreSQL, dropped afterwards) with confirmed drawings made of MNIST training digits, starts
gunicorn as deployed (gthread, 30 s timeout) with one worker, downloads both exports and checks
them, sampling that worker's VmRSS every 10 ms. Prints time, bytes, rows and the worker's
memory growth, and the floor from issue #5.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench.harness import Gunicorn, RssSampler, bench_env, memory_mb, print_floors

GROWTH_LIMIT_MB = 50.0  # issue #5: memory of the web process grows by < 50 MB
INSERT_BATCH = 5000


def fill(database_url: str, instance: str, rows: int) -> str:
    """Create the schema, an admin token, and ``rows`` confirmed drawings; return the token."""
    from flask_migrate import upgrade
    from sqlalchemy import insert

    from training.mnist import load_mnist
    from webapp import create_app
    from webapp.cli import hash_token
    from webapp.extensions import db
    from webapp.models import ApiToken, Drawing, User

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "INSTANCE_PATH": instance,
                      "LOCAL_STORAGE_PATH": str(Path(instance) / "objects"),
                      # create_app sets up Flask-Migrate only for commands, or when asked.
                      "MIGRATIONS": True})
    mnist = load_mnist()
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(mnist.x_train), rows)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    token = uuid.uuid4().hex
    with app.app_context():
        upgrade()
        db.session.add(ApiToken(user=User(username="bench", password_hash="-", is_admin=True),
                                scopes="admin", token_sha256=hash_token(token)))
        db.session.commit()
        for first in range(0, rows, INSERT_BATCH):
            batch = []
            for index in range(first, min(rows, first + INSERT_BATCH)):
                drawing_id = str(uuid.uuid4())
                digit = int(picks[index])
                batch.append({
                    "id": drawing_id, "created_at": start + timedelta(seconds=index), "source": "contribution",
                    "label": int(mnist.y_train[digit]), "status": "confirmed",
                    "object_key": f"drawings/{drawing_id[:2]}/{drawing_id}.png", "content_type": "image/png",
                    "sha256": uuid.uuid4().hex * 2, "size_bytes": 2000, "width": 280, "height": 280,
                    "pixels": mnist.x_train[digit].tobytes(), "client_id": None,
                    "confirmed_at": start + timedelta(seconds=index, milliseconds=500),
                    "holdout": bool(rng.random() < 0.2), "status_reason": "bench"})
            db.session.execute(insert(Drawing), batch)
            db.session.commit()
        db.engine.dispose()
    return token


def download(port: int, path: str, token: str, out: Path, pid: int) -> dict:
    before = memory_mb(pid)
    sampler = RssSampler(pid)
    sampler.start()
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    first_byte = time.perf_counter() - started
    size = 0
    with out.open("wb") as handle:
        while chunk := response.read(1 << 16):
            handle.write(chunk)
            size += len(chunk)
    elapsed = time.perf_counter() - started
    connection.close()
    peak_sampled = sampler.stop()
    after = memory_mb(pid)
    # VmHWM also catches a spike shorter than the sampling interval.
    peak = max(peak_sampled, after["VmHWM"])
    return {"status": response.status, "rows": response.getheader("X-Dataset-Rows"), "bytes": size,
            "seconds": elapsed, "first_byte": first_byte, "rss_before": before["VmRSS"], "peak": peak,
            "growth": peak - before["VmRSS"], "rss_after": after["VmRSS"],
            "disposition": response.getheader("Content-Disposition")}


def check(fmt: str, out: Path, rows: int) -> str:
    """Open what was downloaded the way a user would; say what is in it."""
    if fmt == "npz":
        with np.load(out) as arrays:
            x, y = arrays["x"], arrays["y"]
            assert x.shape == (rows, 28, 28) and x.dtype == np.uint8 and y.shape == (rows,), (x.shape, y.shape)
            assert arrays["holdout"].shape == (rows,) and arrays["ids"].shape == (rows,)
            return f"np.load: x {x.shape} {x.dtype}, y {y.shape}, labels {np.bincount(y, minlength=10).tolist()}"
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        pngs = [name for name in names if name.endswith(".png")]
        assert len(pngs) == rows and "manifest.csv" in names, (len(pngs), rows)
        lines = archive.read("manifest.csv").count(b"\n") - 1
        assert lines == rows, lines
        return f"zip: {len(pngs)} PNGs in {len({name.split('/')[0] for name in pngs})} label folders, " \
               f"manifest.csv with {lines} rows"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL URL; a throwaway schema is made in it (default: a throwaway SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="inkling-bench-export-") as tmp:
        schema = None
        if args.database_url:
            from sqlalchemy import create_engine, text

            schema = f"inkling_bench_{uuid.uuid4().hex[:8]}"
            engine = create_engine(args.database_url)
            with engine.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            separator = "&" if "?" in args.database_url else "?"
            database_url = f"{args.database_url}{separator}options=-csearch_path%3D{schema}"
            kind = "PostgreSQL"
        else:
            database_url = f"sqlite:///{tmp}/inkling.sqlite"
            kind = "SQLite"
        try:
            started = time.perf_counter()
            token = fill(database_url, tmp, args.rows)
            fill_seconds = time.perf_counter() - started
            results = serve_and_export(database_url, tmp, token, args.rows)
        finally:
            if schema:
                with engine.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                engine.dispose()

    return report(args, kind, fill_seconds, results)


def report(args, kind: str, fill_seconds: float, results: dict) -> int:
    print(f"Dataset export of {args.rows:,} confirmed drawings ({kind}; filled in {fill_seconds:.1f} s), "
          "gunicorn gthread, 1 worker x 4 threads, 30 s timeout, on loopback")
    print(f"  worker RSS before the first export: {results['baseline']:.1f} MB")
    for fmt, result in results["exports"].items():
        print(f"  format={fmt}  HTTP {result['status']}  {result['disposition']}")
        print(f"    rows           {result['rows']}")
        print(f"    bytes          {result['bytes']:,} ({result['bytes'] / 2**20:.1f} MiB)")
        print(f"    time           {result['seconds']:.2f} s (first byte after {result['first_byte'] * 1000:.0f} ms; "
              f"{int(result['rows']) / result['seconds']:,.0f} rows/s)")
        print(f"    worker RSS     before {result['rss_before']:.1f} MB, peak {result['peak']:.1f} MB, "
              f"after {result['rss_after']:.1f} MB: growth {result['growth']:.1f} MB")
        print(f"    check          {result['check']}")
    growth = max(result["peak"] for result in results["exports"].values()) - results["baseline"]
    passed = (all(result["status"] == 200 and result["rows"] == str(args.rows)
                  for result in results["exports"].values()) and growth < GROWTH_LIMIT_MB)
    print(f"  worker RSS growth over both exports: {growth:.1f} MB")
    return print_floors("Floor (issue #5)", [
        (f"{args.rows:,} drawings exported in both formats, streamed, without a timeout; web process memory "
         f"grows by < {GROWTH_LIMIT_MB:.0f} MB", passed)])


def serve_and_export(database_url: str, tmp: str, token: str, rows: int) -> dict:
    env = bench_env(tmp, DATABASE_URL=database_url, LOCAL_STORAGE_PATH=str(Path(tmp) / "objects"))
    # No models are registered, so /healthz says 503: any answer will do.
    server = Gunicorn(env, args=["--worker-class", "gthread", "--workers", "1", "--threads", "4", "--timeout", "30"],
                      healthy=False, timeout=60)
    with server:
        (worker,) = server.workers()
        baseline = memory_mb(worker)["VmRSS"]
        exports = {}
        for fmt in ("npz", "zip"):
            out = Path(tmp) / f"export.{fmt}"
            exports[fmt] = download(server.port, f"/api/v1/dataset/export?format={fmt}", token, out, worker)
            exports[fmt]["check"] = check(fmt, out, rows)
            out.unlink()
        if server.workers() != [worker]:
            raise SystemExit("the gunicorn worker was replaced during the exports (a timeout?)")
        return {"baseline": baseline, "exports": exports}


if __name__ == "__main__":
    raise SystemExit(main())
