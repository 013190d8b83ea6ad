"""HTTP benchmark: POST /api/v1/predictions against gunicorn on 127.0.0.1, as deployed.

    python bench/http.py [--requests 2000] [--concurrency 8] [--workers 2] [--ratings 30]

Starts gunicorn on a free loopback port with a throwaway database and object store
(the base models from instance/models), sends canvas-like drawings, and prints client
latency, server time (the app's Server-Timing header), errors, each worker's RSS, and the
statuses of predictions each rated as soon as answered (either worker may take the rating).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named after the stdlib's http package; keep its folder off the import path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.procs import children, free_port, rss_mb  # noqa: E402





def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serial-requests", type=int, default=500,
                        help="requests sent one at a time first, for the server time floor")
    parser.add_argument("--ratings", type=int, default=30, help="predictions each rated at once, at the end")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="as gunicorn.conf.py")
    args = parser.parse_args()

    import numpy as np

    from training.devset import generate
    from training.mnist import load_mnist

    models = Path(os.environ.get("INKLING_INSTANCE_PATH", ROOT / "instance")) / "models"
    mnist = load_mnist()
    payloads = [json.dumps({"image": d.data_url}).encode()
                for d in generate(mnist.x_test, mnist.y_test, per_variant=20, seed=3)]

    with tempfile.TemporaryDirectory(prefix="inkling-bench-") as tmp:
        # One address stands in for many clients here: per-address rate limits would only measure themselves.
        env = {**os.environ, "INKLING_INSTANCE_PATH": tmp, "MODELS_PATH": str(models), "RATELIMIT_ENABLED": "0"}
        env.pop("DATABASE_URL", None)
        env.pop("S3_BUCKET", None)
        flask = [str(Path(sys.executable).parent / "flask"), "--app", "webapp"]
        subprocess.run(flask + ["db", "upgrade"], env=env, check=True, capture_output=True, cwd=ROOT)
        subprocess.run(flask + ["models", "import-base"], env=env, check=True, capture_output=True, cwd=ROOT)
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning",
             "webapp:create_app()"], env=env, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    connection.request("GET", "/healthz")
                    if connection.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not become healthy in 60 s")
                time.sleep(0.5)

            def run(requests: int, concurrency: int):
                return fire(port, payloads, requests, concurrency)

            serial = run(args.serial_requests, 1)
            loaded = run(args.requests, args.concurrency)
            ratings = rate_at_once(port, payloads, args.ratings)
            worker_rss = [rss_mb(pid) for pid in children(server.pid)]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)

    print(f"POST /api/v1/predictions against gunicorn ({args.workers} workers x {args.threads} threads, "
          "SQLite + local store, canvas-like drawings)")
    for title, result in ((f"{args.serial_requests} requests one at a time", serial),
                          (f"{args.requests} requests at concurrency {args.concurrency}", loaded)):
        print(f"  {title}")
        print(f"    throughput     {result['rate']:8.1f} req/s")
        print(f"    client latency p50 {np.percentile(result['client_ms'], 50):7.2f} ms   "
              f"p99 {np.percentile(result['client_ms'], 99):7.2f} ms")
        print(f"    server time    p50 {np.percentile(result['server_ms'], 50):7.2f} ms   "
              f"p99 {np.percentile(result['server_ms'], 99):7.2f} ms")
        print(f"    statuses       {result['statuses']}")
    print(f"  {args.ratings} predictions, each rated as soon as answered (a new connection each, so either "
          f"worker may answer): {ratings}")
    print(f"  worker RSS       {', '.join(f'{mb:.0f} MB' for mb in worker_rss)}")
    errors = sum(count for status, count in loaded["statuses"].items() if status != 200)
    errors += sum(count for status, count in serial["statuses"].items() if status != 200)
    checks = [("server time p50 <= 5 ms (one at a time)", np.percentile(serial["server_ms"], 50) <= 5),
              (f"0 errors in {args.requests} requests at concurrency {args.concurrency}", errors == 0),
              ("every web worker <= 200 MB RSS", bool(worker_rss) and max(worker_rss) <= 200),
              (f"{args.ratings} x 201 for ratings sent at once", ratings == {201: args.ratings})]
    print("\nFloors (issues #3 and #7)")
    for label, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {label}")
    return 0 if all(passed for _, passed in checks) else 1


def rate_at_once(port: int, payloads: list[bytes], count: int) -> dict:
    """Statuses of ``count`` ratings, each sent as soon as its prediction is answered, as one visitor."""
    statuses: dict = {}
    cookie = ""
    for index in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})}
        connection.request("POST", "/api/v1/predictions", body=payloads[index % len(payloads)], headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        cookie = cookie or (response.getheader("Set-Cookie") or "").split(";")[0]
        headers["Cookie"] = cookie
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", f"/api/v1/predictions/{answer['id']}/feedback",
                           body=json.dumps({"label": index % 10}).encode(), headers=headers)
        status = connection.getresponse().status
        connection.close()
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def fire(port: int, payloads: list[bytes], requests: int, concurrency: int) -> dict:
    """Send ``requests`` predictions over ``concurrency`` keep-alive connections."""
    client_ms, server_ms, statuses = [], [], {}
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for index in counter:
            body = payloads[index % len(payloads)]
            start = time.perf_counter()
            try:
                connection.request("POST", "/api/v1/predictions", body=body,
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
                timing = response.getheader("Server-Timing", "")
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status, timing = "connection error", ""
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                client_ms.append(elapsed)
                if "dur=" in timing:
                    server_ms.append(float(timing.split("dur=")[1]))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"rate": requests / (time.perf_counter() - started), "client_ms": client_ms,
            "server_ms": server_ms, "statuses": statuses}


if __name__ == "__main__":
    raise SystemExit(main())
