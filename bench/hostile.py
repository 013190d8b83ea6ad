"""Hostile input: decompression bombs, 60 MB bodies against gunicorn, and 10,000 fuzzed PNGs.

    python -m bench.hostile [--fuzz 10000] [--seed 1] [--models instance/models]

1. Bombs, in this process: a ~300 KB PNG declaring 10000x10000 pixels, and a 60 KB PNG whose
   zTXt chunks would inflate to 60 MB, through preprocessing alone and through the Flask app
   (test client): time to the answer and the growth of peak RSS.
2. 60 MB bodies to gunicorn on 127.0.0.1 (as the Procfile runs it: gthread workers), with
   Content-Length and chunked without one, JSON and multipart: the status and how soon it came.
3. A seeded fuzz: mutated PNGs POSTed through the Flask test client, alternating predictions
   and contributions: counts by status, 0 x 5xx, and the objects in the store match the rows.
4. Hostile requests, every route from app.url_map: deep JSON to every POST (as an admin), Unicode
   and odd integers and dates in every query parameter of every GET, control characters and
   backslashes in every ?next=: counts by status, 0 x 5xx, 0 rows, 0 objects.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import Gunicorn, bench_env, flask, memory_mb, models_path, print_floors

MB = 1024 * 1024


def reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path("/proc/self/clear_refs").write_text("5")


def measure(function, repeats: int) -> tuple[float, float, float, object]:
    """Median and worst wall time (ms) of ``function``, the worst growth of peak RSS (MB), and its result."""
    times, growth, result = [], 0.0, None
    for _ in range(repeats):
        reset_peak_rss()
        before = memory_mb()["VmRSS"]
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000)
        growth = max(growth, memory_mb()["VmHWM"] - before)
    times.sort()
    return times[len(times) // 2], times[-1], growth, result


def make_app(instance: Path, models: Path):
    from flask_migrate import upgrade

    from webapp import create_app

    app = create_app({"INSTANCE_PATH": str(instance), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'db.sqlite'}",
                      "LOCAL_STORAGE_PATH": str(instance / "objects"), "MODELS_PATH": str(models),
                      "PREDICTION_WRITE_BEHIND": False, "MODEL_REFRESH_SECONDS": 3600,
                      "RATELIMIT_ENABLED": False, "MIGRATIONS": True})
    with app.app_context():
        upgrade()
    result = app.test_cli_runner().invoke(args=["models", "import-base"])
    if result.exit_code != 0:
        raise SystemExit(f"models import-base failed: {result.output}")
    return app


def bombs(app, repeats: int) -> list[tuple[str, bool]]:
    import warnings

    from PIL import Image

    from training.preprocess import PreprocessError, preprocess
    from bench import corpus
    from webapp.config import MAX_IMAGE_BYTES

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    client = app.test_client()
    client.post("/api/v1/predictions", json={"image": corpus.data_url(corpus.encode(corpus.digit_image()))})
    checks = []
    print("1. Bombs (median and worst of", repeats, "runs; peak RSS growth)")
    for name, data in (("10000x10000 PNG", corpus.bomb_png()), ("PNG with 60 x 1 MB of zTXt", corpus.text_bomb_png())):
        url = corpus.data_url(data)

        def direct():
            try:
                preprocess(url, max_bytes=MAX_IMAGE_BYTES)
                return "accepted"
            except PreprocessError as exc:
                return f"{exc.status} {exc.code}"

        def through_app():
            return client.post("/api/v1/predictions", json={"image": url}).status_code

        for how, function in (("preprocess()", direct), ("POST /api/v1/predictions", through_app)):
            median, worst, growth, result = measure(function, repeats)
            print(f"   {name:28} {len(data) / 1024:6.0f} KB  {how:26} -> {result}:  "
                  f"p50 {median:6.2f} ms, worst {worst:6.2f} ms, RSS +{growth:5.1f} MB")
            if name.startswith("10000"):
                checks.append((f"bomb refused (413) via {how} in <= 50 ms (worst {worst:.1f} ms)",
                               str(result).startswith("413") and worst <= 50))
                checks.append((f"bomb via {how}: <= 20 MB memory growth (+{growth:.1f} MB)", growth <= 20))
            else:
                checks.append((f"zTXt bomb via {how}: <= 20 MB memory growth (+{growth:.1f} MB)", growth <= 20))
    decoding_control(corpus)
    return checks


def decoding_control(corpus) -> None:
    """A control, so that a growth of 0 MB above means nothing was decoded: the same
    measurement of Pillow decoding a 3000x3000 RGB PNG, which the header check would allow
    only up to 4,000,000 pixels."""
    import io

    from PIL import Image

    control = corpus.bomb_png(3000)

    def decode_control():
        image = Image.open(io.BytesIO(control))
        image.load()
        return image.size

    median, worst, growth, _ = measure(decode_control, 1)
    print(f"   control: Pillow decoding a {len(control) / 1024:.0f} KB 3000x3000 PNG:  "
          f"{median:6.2f} ms, RSS +{growth:5.1f} MB")


def send_big_body(port: int, *, size: int, chunked: bool, multipart: bool) -> tuple[str, float, int]:
    """POST ``size`` bytes; the status line, the seconds until it came, and the bytes the server took."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    opening = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' if multipart
               else b'{"image": "')
    content_type = "multipart/form-data; boundary=x" if multipart else "application/json"
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(opening) + size}"
    started = time.perf_counter()
    sock.sendall(f"POST /api/v1/drawings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                 f"{framing}\r\n\r\n".encode())
    sent = [0]

    def send():
        block = b"A" * (64 * 1024)
        piece = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(opening), opening) if chunked else opening)
            for _ in range(size // len(block)):
                sock.sendall(piece)
                sent[0] += len(block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # answered and closed: the rest is never read
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    head = b""
    try:
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
        status = head.split(b"\r\n", 1)[0].decode(errors="replace") or "connection closed"
    except OSError as exc:
        status = f"{exc.__class__.__name__}"
    elapsed = time.perf_counter() - started
    sock.close()
    sender.join(timeout=60)
    return status, elapsed, sent[0]


def big_bodies(models: Path) -> list[tuple[str, bool]]:
    checks = []
    with tempfile.TemporaryDirectory(prefix="inkling-hostile-") as tmp:
        env = bench_env(tmp, MODELS_PATH=str(models))
        flask(env, "db", "upgrade")
        server = Gunicorn(env, args=["--workers", "1", "--worker-class", "gthread", "--threads", "4", "--timeout", "30"],
                          healthy=False, timeout=60)
        with server:
            port = server.port
            send_big_body(port, size=0, chunked=False, multipart=False)  # the worker's first request warms it up
            print("\n2. 60 MB bodies to POST /api/v1/drawings, gunicorn gthread (1 worker x 4 threads) on loopback")
            for chunked in (False, True):
                for multipart in (False, True):
                    status, elapsed, sent = send_big_body(port, size=60 * MB, chunked=chunked, multipart=multipart)
                    what = f"{'chunked, no Content-Length' if chunked else 'Content-Length'}, " \
                           f"{'multipart' if multipart else 'JSON'}"
                    print(f"   {what:38} -> {status:32} after {elapsed * 1000:7.1f} ms "
                          f"({sent / MB:5.1f} MB sent before the answer)")
                    checks.append((f"60 MB, {what}: 413 within 2 s", " 413 " in status and elapsed <= 2))
            # The worker is still alive and answering after all that.
            status, _, _ = send_big_body(port, size=0, chunked=False, multipart=False)
            print(f"   afterwards, a small bad body          -> {status}")
            checks.append(("the worker still answers afterwards", status.startswith("HTTP/1.1 4")))
    return checks


def fuzz(app, count: int, seed: int) -> list[tuple[str, bool]]:
    from sqlalchemy import select

    from bench import corpus
    from webapp.extensions import db
    from webapp.models import Drawing
    from webapp.storage import get_store

    payloads = corpus.fuzz_payloads(count, seed=seed)
    client = app.test_client()
    statuses: dict[int, int] = {}
    worst, started = 0.0, time.perf_counter()
    for index, payload in enumerate(payloads):
        path = ("/api/v1/predictions", "/api/v1/drawings")[index % 2]
        began = time.perf_counter()
        response = client.post(path, json={"image": corpus.data_url(payload), "label": index % 10})
        worst = max(worst, time.perf_counter() - began)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            print(f"   5xx for payload {index}: {response.get_json(silent=True)}")
    elapsed = time.perf_counter() - started
    with app.app_context():
        rows = set(db.session.scalars(select(Drawing.object_key)))
        objects = {obj.key for obj in get_store().list("drawings/")}
    print(f"\n3. Fuzz: {count:,} mutated PNGs (seed {seed}), predictions and contributions alternately")
    print(f"   statuses {dict(sorted(statuses.items()))}")
    print(f"   {elapsed:.1f} s, {count / elapsed:.0f} req/s, worst {worst * 1000:.0f} ms; "
          f"{len(rows)} rows, {len(objects)} objects")
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    return [(f"0 x 5xx in {count:,} fuzzed uploads ({server_errors})", server_errors == 0),
            ("objects in the store == rows after the fuzz", rows == objects)]


def redirects_off_site(client) -> int:
    """How many of the corpus's ?next= targets the language switcher sends off the site."""
    from urllib.parse import urlsplit

    from bench import corpus

    bad_redirects = 0
    for target in corpus.BAD_REDIRECTS:
        response = client.get("/language/ja", query_string={"next": target}) if "\n" not in target else None
        location = response.headers.get("Location", "") if response is not None else ""
        if location and (location.startswith("//") or urlsplit(location).netloc or "\\" in location
                         or any(char < " " or char == "\x7f" for char in location)):
            bad_redirects += 1
    return bad_redirects


def admin_headers(app) -> dict[str, str]:
    """A bearer token of a fresh admin: the hostile requests reach the staff routes' bodies too."""
    runner = app.test_cli_runner()
    runner.invoke(args=["users", "create-admin", "hostile-bench", "--password", "long enough"])
    token = runner.invoke(args=["users", "issue-token", "hostile-bench"]).output.strip().splitlines()[-1]
    return {"Authorization": f"Bearer {token}"}


def requests(app) -> list[tuple[str, bool]]:
    import re

    from sqlalchemy import func, select

    from bench import corpus
    from webapp.extensions import db
    from webapp.models import Drawing
    from webapp.storage import get_store

    headers = admin_headers(app)
    with app.app_context():
        drawings_before = db.session.scalar(select(func.count()).select_from(Drawing))
        objects_before = sum(1 for _ in get_store().list("drawings/"))
    client = app.test_client()
    statuses: dict[int, int] = {}
    rules = [rule for rule in app.url_map.iter_rules() if not rule.endpoint.endswith("static")]

    def send(method: str, rule, **kwargs):
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        try:
            status = client.open(path, method=method, headers=headers, **kwargs).status_code
        except ValueError:  # Werkzeug refusing a header (a newline in a Location), before any handler
            status = 500
        statuses[status] = statuses.get(status, 0) + 1
        return status

    for rule in rules:
        if "POST" in rule.methods and rule.endpoint not in ("api.flag_drawing", "admin_api.create_training_run"):
            for _, body in corpus.deep_json_bodies():
                send("POST", rule, data=body, content_type="application/json")
        if "GET" in rule.methods and rule.endpoint != "admin_api.export_dataset":
            for value in corpus.BAD_INTEGERS + corpus.BAD_DATES:
                send("GET", rule, query_string={name: value for name in ("page", "label", "since", "until")})
    bad_redirects = redirects_off_site(client)
    for target in corpus.BAD_REDIRECTS:
        send("GET", next(rule for rule in rules if rule.endpoint == "pages.language"), query_string={"next": target})
    with app.app_context():
        drawings = db.session.scalar(select(func.count()).select_from(Drawing)) - drawings_before
        objects = sum(1 for _ in get_store().list("drawings/")) - objects_before
    total = sum(statuses.values())
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"\n4. Hostile requests over {len(rules)} routes from app.url_map: {total:,} requests")
    print(f"   statuses {dict(sorted(statuses.items()))}; {drawings} new rows, {objects} new objects; "
          f"{bad_redirects} redirects off the site")
    return [(f"0 x 5xx in {total:,} hostile requests ({server_errors})", server_errors == 0),
            (f"0 rows and 0 objects from hostile requests ({drawings}, {objects})", drawings == objects == 0),
            (f"0 redirects off the site ({bad_redirects})", bad_redirects == 0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only-requests", action="store_true", help="section 4 alone")
    parser.add_argument("--models", type=Path,
                        default=models_path())
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)  # every refused upload would log a line
    checks = []
    with tempfile.TemporaryDirectory(prefix="inkling-hostile-") as tmp:
        app = make_app(Path(tmp), args.models)
        if not args.only_requests:
            checks += bombs(app, args.repeats)
            checks += big_bodies(args.models)
            checks += fuzz(app, args.fuzz, args.seed)
        checks += requests(app)
    return print_floors("Floors (issue #7)", checks)


if __name__ == "__main__":
    raise SystemExit(main())
