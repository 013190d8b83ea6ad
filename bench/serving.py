"""HTTP benchmark: POST /api/v1/predictions against gunicorn on 127.0.0.1, as deployed.

    python -m bench.serving [--requests 2000] [--concurrency 8] [--workers 2] [--ratings 30]

Starts gunicorn on a free loopback port with a throwaway database and object store
(the base models from instance/models), sends canvas-like drawings, and prints client
latency, server time (the app's Server-Timing header), errors, each worker's RSS, and the
statuses of predictions each rated as soon as answered (either worker may take the rating).
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time

from bench.harness import Gunicorn, bench_env, flask, models_path, print_floors, rss_mb


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

    from training.devset import generate
    from training.mnist import load_mnist

    mnist = load_mnist()
    payloads = [json.dumps({"image": d.data_url}).encode()
                for d in generate(mnist.x_test, mnist.y_test, per_variant=20, seed=3)]

    with tempfile.TemporaryDirectory(prefix="inkling-bench-") as tmp:
        env = bench_env(tmp, MODELS_PATH=str(models_path()))
        flask(env, "db", "upgrade")
        flask(env, "models", "import-base")
        server = Gunicorn(env, args=["--workers", str(args.workers), "--threads", str(args.threads)],
                          workers=args.workers, timeout=60)
        with server:
            port = server.port

            def run(requests: int, concurrency: int):
                return fire(port, payloads, requests, concurrency)

            serial = run(args.serial_requests, 1)
            loaded = run(args.requests, args.concurrency)
            ratings = rate_at_once(port, payloads, args.ratings)
            worker_rss = [rss_mb(pid) for pid in server.workers()]

    return report(args, serial, loaded, worker_rss, ratings)


def report(args, serial: dict, loaded: dict, worker_rss: list[float], ratings: dict) -> int:
    import numpy as np

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
    return print_floors("Floors (issues #3 and #7)", checks)


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
