"""Load: predictions at concurrency 1, 8 and 32, contributions on PostgreSQL + S3, and a soak, against gunicorn.

    python -m bench.load [--seconds 60] [--soak-seconds 600] [--contrib-seconds 30] [--workers 2]

1. Predictions: gunicorn as the Procfile runs it (gunicorn.conf.py: gthread, 2 workers x 2
   threads, the Procfile's malloc setting) on a free loopback port, SQLite and a local
   object store as `make run` has them, the base models from instance/models. `wrk` POSTs a
   rotating set of canvas-like drawings (training/devset.py) for --seconds at each
   concurrency: throughput, p50/p99 latency, non-2xx.
2. Soak, on the same server: an open-loop client at half the peak rate for --soak-seconds;
   each worker's RSS sampled every few seconds, compared after the warm-up and at the end.
3. Contributions: a fresh gunicorn on PostgreSQL (a throwaway schema in database `test` on
   127.0.0.1:5432) and S3 (moto's server on a free port); `wrk` POSTs labelled drawings for
   --contrib-seconds; afterwards every key under drawings/ has its row and every row its key.

RATELIMIT_ENABLED=0: one loopback address stands in for many clients here, and per-address
limits would only measure themselves. Prints a table and PASS/FAIL per floor (issue #7);
exits 1 if a floor fails. Needs `wrk` (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.harness import Gunicorn, bench_env, flask, free_port, models_path, print_floors, rss_mb

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BUCKET = "inkling-load"

# wrk runs this in each of its threads: a rotating set of bodies (one JSON document a line),
# each thread starting at its own place, and a JSON summary line at the end.
WRK_SCRIPT = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local index = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function init(args)
  index = math.random(#bodies)
end
function request()
  index = index %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[index])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %%d, "duration_us": %%d, "status": %%d, "connect": %%d, ' ..
    '"read": %%d, "write": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""





def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def socket_owners(server_port: int, pids: list[int]) -> dict[int, int]:
    """Client port -> the worker pid holding the server side of that loopback connection."""
    inodes = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local_port == server_port and remote_port:
            inodes[fields[9]] = remote_port
    owners = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    owners[inodes[target[8:-1]]] = pid
        except OSError:
            continue
    return owners


def busy_note() -> str:
    load1, load5, _ = os.getloadavg()
    return f"load average {load1:.2f} / {load5:.2f} (1 / 5 min) on {os.cpu_count()} cores"


def drawings(per_variant: int = 20, seed: int = 3):
    """Canvas-like drawings (training/devset.py) re-rendered from MNIST test digits."""
    from training.devset import generate
    from training.mnist import load_mnist

    mnist = load_mnist()
    return generate(mnist.x_test, mnist.y_test, per_variant=per_variant, seed=seed)


def base_env(instance: Path, models: Path, workers: int, **extra: str) -> dict:
    """The environment of `make run` (nothing configured: SQLite, local store) plus the Procfile's."""
    env = bench_env(instance, MODELS_PATH=str(models), WEB_CONCURRENCY=str(workers), LOG_LEVEL="WARNING",
                    # The Procfile's web line sets it (two malloc arenas, not one per thread).
                    MALLOC_ARENA_MAX="2", **extra)
    for name in ("S3_ENDPOINT_URL", "REDIS_URL", "INKLING_ENV", "GUNICORN_CMD_ARGS"):
        if name not in extra:
            env.pop(name, None)
    return env


def run_wrk(port: int, path: str, bodies_file: Path, *, seconds: float, concurrency: int, workdir: Path,
            server_pids: list[int] = ()) -> dict:
    """wrk, closed loop: ``concurrency`` connections, each sending as soon as answered.

    gunicorn.conf.py closes every connection after its response (so that a free worker takes
    the next one) and wrk reconnects; each worker's share of the CPU shows the balance.
    """
    script = workdir / f"wrk-{path.strip('/').replace('/', '-')}.lua"
    script.write_text(WRK_SCRIPT % {"bodies": bodies_file, "path": path})
    threads = min(concurrency, 2)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = {pid: cpu_seconds([pid]) for pid in server_pids}
    done = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                           "-s", str(script), f"http://127.0.0.1:{port}{path}"],
                          capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = {pid: cpu_seconds([pid]) - used for pid, used in server_before.items()}
    server_cpu = sum(worker_cpu.values())
    line = next((line for line in done.stdout.splitlines() if line.startswith("WRK ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{done.stdout}{done.stderr}")
    result = json.loads(line[4:])
    errors = sum(result[key] for key in ("status", "connect", "read", "write", "timeout"))
    result.update(rate=result["requests"] / (result["duration_us"] / 1e6), non_2xx=errors,
                  p50_ms=result["p50_us"] / 1000, p99_ms=result["p99_us"] / 1000,
                  client_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                  seconds=result["duration_us"] / 1e6, server_cpu=server_cpu, worker_cpu=worker_cpu,
                  server_cpu_ms=server_cpu * 1000 / max(result["requests"], 1))
    return result


class OpenLoop:
    """Requests at a fixed rate whatever the answers' pace (open loop), from a pool of keep-alive connections.

    Request i is due at start + i / rate; its latency counts from when it was due, so a server
    that falls behind shows it. ``on_response(record)`` sees every answer (statuses, and the
    body when ``parse``); records carry the connection's local port, which says which worker
    answered (a keep-alive connection stays with the worker that accepted it).
    """

    def __init__(self, port: int, payloads: list[bytes], *, rate: float, seconds: float, connections: int = 16,
                 path: str = "/api/v1/predictions", parse: bool = False, on_response=None):
        self.port, self.payloads, self.rate, self.seconds = port, payloads, rate, seconds
        self.connections, self.path, self.parse, self.on_response = connections, path, parse, on_response
        self.statuses: dict = {}
        self.latencies_ms: list[float] = []
        self.unstored = 0  # answered, but with no id: the write-behind queue was full or storage down
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> OpenLoop:
        if not hasattr(self, "_pool"):  # open() not called: each connects with its first request
            self._pool = [http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                          for _ in range(self.connections)]
        self.started = time.perf_counter()
        self.total = int(self.rate * self.seconds)
        threads = [threading.Thread(target=self._worker, args=(connection,), daemon=True) for connection in self._pool]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.elapsed = time.perf_counter() - self.started
        return self

    def open(self, pids: list[int]) -> dict[int, int]:
        """Connect, then move connections until every worker holds its share; connections per worker.

        Whichever worker wakes first accepts a new connection, and an idle pair of gthread
        workers often lets one take them all: the other would then sit idle.
        """
        self._pool = [self._connect() for _ in range(self.connections)]
        share = max(1, self.connections // (2 * len(pids)))
        for _ in range(20 * self.connections):
            owners = socket_owners(self.port, pids)
            held = {pid: [i for i, c in enumerate(self._pool) if owners.get(c.sock.getsockname()[1]) == pid]
                    for pid in pids}
            if min(len(indexes) for indexes in held.values()) >= share:
                break
            busiest = held[max(held, key=lambda pid: len(held[pid]))]
            if not busiest:  # not accepted yet: still in the listen backlog
                time.sleep(0.05)
                continue
            moved = busiest[0]
            self._pool[moved].close()
            self._pool[moved] = self._connect()
            time.sleep(0.02)
        return {pid: len(indexes) for pid, indexes in held.items()}

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.connect()
        return connection

    def _worker(self, connection: http.client.HTTPConnection) -> None:
        while not self._stop.is_set():
            with self._lock:
                index = self._next
                self._next += 1
            if index >= self.total:
                break
            due = self.started + index / self.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            record = {"due": due, "local_port": connection.sock.getsockname()[1] if connection.sock else None}
            try:
                connection.request("POST", self.path, body=self.payloads[index % len(self.payloads)],
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                body = response.read()
                record["status"] = response.status
                if self.parse and response.status == 200:
                    record["body"] = json.loads(body)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                record["status"] = f"{exc.__class__.__name__}"
                connection.close()
                connection = self._connect()
            record["done"] = time.perf_counter()
            with self._lock:
                self.statuses[record["status"]] = self.statuses.get(record["status"], 0) + 1
                self.latencies_ms.append((record["done"] - due) * 1000)
                if "body" in record and record["body"].get("id") is None:
                    self.unstored += 1
            if self.on_response is not None:
                self.on_response(record)
        connection.close()


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def predictions_and_soak(args, tmp: Path, models: Path, sample) -> tuple[list, list, dict]:
    instance = tmp / "predictions"
    instance.mkdir()
    env = base_env(instance, models, args.workers)
    flask(env, "db", "upgrade")
    flask(env, "models", "import-base")
    payloads = [json.dumps({"image": d.data_url}) for d in sample]
    bodies = tmp / "predictions.jsonl"
    bodies.write_text("\n".join(payloads) + "\n")
    runs, soak = [], {}
    with Gunicorn(env, tmp / "gunicorn-predictions.log") as server:
        run_wrk(server.port, "/api/v1/predictions", bodies, seconds=5, concurrency=8, workdir=tmp)  # warm-up
        for concurrency in args.concurrency:
            print(f"  predictions, concurrency {concurrency}, {args.seconds} s ({busy_note()}) ...", flush=True)
            result = run_wrk(server.port, "/api/v1/predictions", bodies, seconds=args.seconds,
                             concurrency=concurrency, workdir=tmp, server_pids=server.workers())
            result["concurrency"] = concurrency
            result["load"] = os.getloadavg()[0]
            runs.append(result)
            print(f"    {result['rate']:7.1f} req/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                  f"non-2xx {result['non_2xx']}; workers used {result['server_cpu_ms']:.2f} CPU-ms a request, "
                  f"wrk {result['client_cpu']:.1f} CPU-s in all", flush=True)
            print("      per worker: " + ", ".join(
                f"pid {pid} {cpu / result['seconds'] * 100:.0f} % CPU"
                for pid, cpu in result["worker_cpu"].items()), flush=True)
        if args.soak_seconds > 0:
            peak = max(run["rate"] for run in runs)
            soak = run_soak(server, [p.encode() for p in payloads], rate=peak / 2, seconds=args.soak_seconds,
                            interval=args.rss_interval)
    return runs, soak


def run_soak(server: Gunicorn, payloads: list[bytes], *, rate: float, seconds: float, interval: float) -> dict:
    warmup = min(60.0, seconds / 5)
    print(f"  soak: {rate:.0f} req/s (half the peak) for {seconds:.0f} s, RSS every {interval:.0f} s, "
          f"warm-up {warmup:.0f} s ({busy_note()}) ...", flush=True)
    pids = server.workers()
    samples: list[tuple[float, dict[int, float]]] = []
    # Connections open with their first request: gunicorn.conf.py closes each after its response,
    # and gunicorn drops one that has sent nothing for 5 s.
    client = OpenLoop(server.port, payloads, rate=rate, seconds=seconds, connections=16, parse=True)
    runner = threading.Thread(target=client.run)
    runner.start()
    started = time.monotonic()
    while runner.is_alive():
        samples.append((time.monotonic() - started, {pid: rss_mb(pid) for pid in pids if Path(f"/proc/{pid}").exists()}))
        runner.join(timeout=interval)
    samples.append((time.monotonic() - started, {pid: rss_mb(pid) for pid in pids if Path(f"/proc/{pid}").exists()}))
    baseline = next(rss for at, rss in samples if at >= warmup)
    end = samples[-1][1]
    growth = {pid: (end[pid] - baseline[pid]) / baseline[pid] * 100 for pid in pids if pid in end and pid in baseline}
    five_xx = sum(count for status, count in client.statuses.items() if isinstance(status, int) and status >= 500)
    result = {"rate": rate, "achieved": sum(client.statuses.values()) / client.elapsed, "seconds": seconds,
              "statuses": client.statuses, "five_xx": five_xx, "unstored": client.unstored,
              "p50_ms": percentile(client.latencies_ms, 50), "p99_ms": percentile(client.latencies_ms, 99),
              "baseline": baseline, "end": end, "peak": {pid: max(s[1].get(pid, 0) for s in samples) for pid in pids},
              "growth": growth, "same_workers": server.workers() == pids, "warmup": warmup,
              "load": os.getloadavg()[0]}
    for pid in pids:
        print(f"    worker {pid}: {baseline.get(pid, 0):6.1f} MB after warm-up -> {end.get(pid, 0):6.1f} MB at the end "
              f"(peak {result['peak'][pid]:6.1f} MB, {growth.get(pid, float('nan')):+5.1f} %)")
    print(f"    {result['achieved']:.1f} req/s achieved, statuses {client.statuses}, "
          f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms (from when due), "
          f"{client.unstored} answered but not stored", flush=True)
    return result


def contributions(args, tmp: Path, models: Path, sample) -> dict:
    import boto3
    from moto.server import ThreadedMotoServer
    from sqlalchemy import create_engine, text

    schema = f"inkling_load_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG_URL)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    s3_port = free_port()
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(credentials)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{s3_port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)  # an operator creates the bucket, not the app
        instance = tmp / "contributions"
        instance.mkdir()
        env = base_env(instance, models, args.workers, DATABASE_URL=f"{PG_URL}?options=-csearch_path%3D{schema}",
                       S3_BUCKET=BUCKET, S3_ENDPOINT_URL=endpoint, **credentials)
        flask(env, "db", "upgrade")
        flask(env, "models", "import-base")
        bodies = tmp / "contributions.jsonl"
        bodies.write_text("".join(json.dumps({"image": d.data_url, "label": d.label}) + "\n" for d in sample))
        with Gunicorn(env, tmp / "gunicorn-contributions.log") as server:
            print(f"  contributions (PostgreSQL + moto S3), concurrency {args.contrib_concurrency}, "
                  f"{args.contrib_seconds} s ({busy_note()}) ...", flush=True)
            result = run_wrk(server.port, "/api/v1/drawings", bodies, seconds=args.contrib_seconds,
                             concurrency=args.contrib_concurrency, workdir=tmp, server_pids=server.workers())
            result["load"] = os.getloadavg()[0]
        # The server is stopped: whatever it was doing is finished, so the two sides must agree.
        with engine.connect() as connection:
            rows = set(connection.execute(text(f'SELECT object_key FROM "{schema}".drawings')).scalars())
        keys = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="drawings/"):
            keys |= {item["Key"] for item in page.get("Contents", [])}
        result.update(rows=len(rows), keys=len(keys), orphan_keys=len(keys - rows), rows_without_key=len(rows - keys))
        print(f"    {result['rate']:7.1f} req/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
              f"non-2xx {result['non_2xx']}; {len(rows)} rows, {len(keys)} objects: {result['orphan_keys']} keys "
              f"without a row, {result['rows_without_key']} rows without a key", flush=True)
        return result
    finally:
        moto.stop()
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="each prediction run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--soak-seconds", type=float, default=600, help="0 skips the soak")
    parser.add_argument("--rss-interval", type=float, default=5)
    parser.add_argument("--contrib-seconds", type=float, default=30, help="0 skips contributions")
    parser.add_argument("--contrib-concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", type=Path, default=models_path())
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: sudo apt-get install -y wrk")

    sample = drawings()
    print(f"Load against gunicorn (gunicorn.conf.py: {args.workers} gthread workers x "
          f"{os.environ.get('GUNICORN_THREADS', 2)} threads) on 127.0.0.1; client wrk (closed loop) and, "
          f"for the soak, an open-loop Python client; RATELIMIT_ENABLED=0; {len(sample)} canvas-like drawings; "
          f"{busy_note()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="inkling-load-") as name:
        tmp = Path(name)
        runs, soak = predictions_and_soak(args, tmp, args.models.resolve(), sample)
        contrib = contributions(args, tmp, args.models.resolve(), sample) if args.contrib_seconds > 0 else {}
    print_summary(args, runs, soak, contrib)
    return print_floors(f"Floors (issue #7); finished at {busy_note()}", floors(runs, soak, contrib))


def print_summary(args, runs: list[dict], soak: dict, contrib: dict) -> None:
    print("\nSummary")
    print(f"  {'run':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'CPU-ms/req':>10} {'load1':>6}")
    for run in runs:
        print(f"  {'predictions, concurrency %d, %.0f s (wrk)' % (run['concurrency'], run['seconds']):44} "
              f"{run['rate']:8.1f} {run['p50_ms']:8.2f} {run['p99_ms']:8.2f} {run['non_2xx']:8d} "
              f"{run['server_cpu_ms']:10.2f} {run['load']:6.2f}")
    if soak:
        bad = sum(c for s, c in soak["statuses"].items() if s != 200)
        print(f"  {'soak, %.0f req/s open loop, %.0f s' % (soak['rate'], soak['seconds']):44} "
              f"{soak['achieved']:8.1f} {soak['p50_ms']:8.2f} {soak['p99_ms']:8.2f} {bad:8d} {'':10} {soak['load']:6.2f}")
    if contrib:
        print(f"  {'contributions, concurrency %d, PG + S3 (wrk)' % args.contrib_concurrency:44} "
              f"{contrib['rate']:8.1f} {contrib['p50_ms']:8.2f} {contrib['p99_ms']:8.2f} {contrib['non_2xx']:8d} "
              f"{contrib['server_cpu_ms']:10.2f} {contrib['load']:6.2f}")


def floors(runs: list[dict], soak: dict, contrib: dict) -> list[tuple[str, bool]]:
    checks = []
    for run in runs:
        checks.append((f"predictions at concurrency {run['concurrency']}: 0 non-2xx ({run['non_2xx']})", run["non_2xx"] == 0))
        if run["concurrency"] == 8:
            checks.append((f"predictions at concurrency 8: >= 300 req/s ({run['rate']:.1f})", run["rate"] >= 300))
            checks.append((f"predictions at concurrency 8: p99 <= 50 ms ({run['p99_ms']:.2f} ms)", run["p99_ms"] <= 50))
    if soak:
        worst = max(soak["growth"].values()) if soak["growth"] else float("inf")
        checks.append((f"soak: worker RSS grows <= 10 % after warm-up (worst {worst:+.1f} %)",
                       worst <= 10 and soak["same_workers"]))
        checks.append((f"soak: 0 x 5xx ({soak['five_xx']})", soak["five_xx"] == 0))
    if contrib:
        checks.append((f"contributions: >= 100 req/s ({contrib['rate']:.1f})", contrib["rate"] >= 100))
        checks.append((f"contributions: 0 non-2xx ({contrib['non_2xx']})", contrib["non_2xx"] == 0))
        checks.append((f"contributions: 0 orphans ({contrib['orphan_keys']} keys without a row, "
                       f"{contrib['rows_without_key']} rows without a key)",
                       contrib["orphan_keys"] == 0 and contrib["rows_without_key"] == 0))
    return checks


if __name__ == "__main__":
    raise SystemExit(main())
