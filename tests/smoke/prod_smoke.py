"""Production smoke test: the Procfile's processes on loopback, configured as Heroku would, driven over HTTP.

    python tests/smoke/prod_smoke.py [--keep] [--timeout 600]      (make prod-smoke)

On this machine only: a fresh PostgreSQL database, Redis db 14, S3 from moto's server mode,
then the Procfile's `release`, the app.json post-deploy step (base models trained small, so
it takes seconds), and `web` (gunicorn, 2 workers) and `worker` (Celery) as subprocesses with
INKLING_ENV=production and nothing but environment variables. It predicts, contributes,
rates, creates an admin and a token with the CLI, confirms drawings, retrains until a version
is promoted, watches both web workers switch to it, rolls back, stops everything with SIGTERM
as Heroku does, and checks that nothing was lost: every drawing row has its object in the
bucket and every object its row, and every answered prediction was stored. Prints timings,
each web worker's memory, and PASS/FAIL; exits 1 on failure. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent  # the virtualenv's bin: gunicorn, celery, flask, moto_server
POSTGRES_URL = os.environ.get("SMOKE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SMOKE_REDIS_URL", "redis://127.0.0.1:6379/14")  # a db of its own
BUCKET = "inkling-smoke"
WEB_WORKERS = 2
HEROKU_GRACE_SECONDS = 30  # SIGTERM, then SIGKILL this much later
RSS_FLOOR_MB = 200.0
CONTRIBUTIONS = 64  # canvas drawings contributed, reviewed by the admin
MISLABELLED = 4  # of which this many carry a wrong label and are rejected
PREDICTIONS = 24  # predictions made and rated (feedback)
RATERS = 4  # visitors who make and rate them
BURST = 30  # predictions answered just before the SIGTERM: all must be stored
VISITORS = 50


class SmokeFailure(Exception):
    pass


class Smoke:
    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.timings: list[tuple[str, float]] = []
        self.checks: list[tuple[str, bool, str]] = []
        self.processes: dict[str, subprocess.Popen] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="inkling-smoke-"))
        self.database = f"inkling_smoke_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.s3_port = free_port()
        self.request_numbers = itertools.count(1)
        self.env: dict[str, str] = {}
        self.token = ""
        self.answered_ids: list[str] = []
        self.memory_stages: list[tuple[str, list[float]]] = []

    # ---- bookkeeping -------------------------------------------------------------------------

    @contextmanager
    def phase(self, name: str):
        print(f"-- {name}", flush=True)
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((name, time.monotonic() - started))
        if time.monotonic() - self.started > self.args.timeout:
            raise SmokeFailure(f"over the {self.args.timeout:.0f} s budget after {name!r}")

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        print(f"   {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
        return bool(ok)

    def require(self, name: str, ok: bool, detail: str = "") -> None:
        if not self.check(name, ok, detail):
            raise SmokeFailure(f"{name}: {detail}")

    # ---- the services ------------------------------------------------------------------------

    def start_services(self) -> None:
        import boto3
        import psycopg
        import redis

        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')
        redis.Redis.from_url(REDIS_URL).flushdb()
        self.spawn("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)], env=dict(os.environ))
        wait_for_port(self.s3_port, timeout=30, process=self.processes["s3"])
        self.s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.s3_port}", region_name="us-east-1",
                               aws_access_key_id="smoke", aws_secret_access_key="smoke")
        self.s3.create_bucket(Bucket=BUCKET)  # an operator creates the bucket, not the app
        base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgres://", 1)
        instance = self.tmp / "dyno"  # the dyno's ephemeral disk: nothing may depend on it
        mnist = ROOT / "instance" / "data" / "mnist.npz"
        self.env = {
            "PATH": f"{BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin", "HOME": str(self.tmp), "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            # What Heroku and app.json set: the add-ons' URLs (Heroku's postgres:// scheme), a
            # generated secret, the S3 variables, the port and the web concurrency.
            "INKLING_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": f"{base}/{self.database}", "REDIS_URL": REDIS_URL,
            "S3_BUCKET": BUCKET, "S3_REGION": "us-east-1", "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ACCESS_KEY_ID": "smoke", "AWS_SECRET_ACCESS_KEY": "smoke",
            "PORT": str(self.port), "WEB_CONCURRENCY": str(WEB_WORKERS),
            "INKLING_INSTANCE_PATH": str(instance),
            # A dyno has no fonts, so it never draws the reference set (an admin uploads one, see
            # the README); this machine has them, and would otherwise gate the smoke's tiny
            # networks on writers they were never meant to read.
            "REFERENCE_BUILD": "0",
        }
        if mnist.exists():  # saves each process fetching MNIST from PyPI, as a dyno would
            self.env["MNIST_PATH"] = str(mnist)

    def spawn(self, name: str, command: list[str] | str, *, env: dict) -> subprocess.Popen:
        shell = isinstance(command, str)
        process = subprocess.Popen(
            ["bash", "-c", command] if shell else command, cwd=ROOT, env=env, start_new_session=True,
            stdout=open(self.tmp / f"{name}.out", "wb"), stderr=open(self.tmp / f"{name}.err", "wb"))
        self.processes[name] = process
        return process

    def run(self, name: str, command: str, *, expect_ok: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if expect_ok and result.returncode != 0:
            raise SmokeFailure(f"{name} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result

    def stop(self, name: str, *, sig: int = signal.SIGTERM, grace: float = HEROKU_GRACE_SECONDS) -> tuple[float, int | None]:
        """Signal every process of the group, as Heroku signals every process of a dyno."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return 0.0, process.poll() if process else None
        started = time.monotonic()
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - started
        alive = group_alive(process.pid)
        if alive or process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(10)
            return took, None
        return took, process.returncode

    def procfile(self) -> dict[str, str]:
        entries = {}
        for line in (ROOT / "Procfile").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, command = line.split(":", 1)
                entries[name.strip()] = command.strip()
        return entries

    # ---- HTTP --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict | None = None, *, admin: bool = False,
                timeout: float = 30, cookie: str | None = None,
                response_headers: dict | None = None) -> tuple[int, dict]:
        """One request on its own connection (so gunicorn's workers share them), as Heroku's router sends it."""
        number = next(self.request_numbers)
        # As Heroku's router forwards it: its request id, HTTPS, and the visitor's address (fifty
        # visitors take turns, so that per-address rate limits see ordinary traffic).
        headers = {"X-Request-ID": f"smoke-{number}", "X-Forwarded-Proto": "https",
                   "X-Forwarded-For": f"203.0.113.{number % VISITORS + 1}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if admin:
            headers["Authorization"] = f"Bearer {self.token}"
        if cookie:
            headers["Cookie"] = cookie
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            if response_headers is not None:
                response_headers.update((name.lower(), value) for name, value in response.getheaders())
        finally:
            connection.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"raw": raw[:300].decode(errors="replace")}
        return response.status, payload

    def ok(self, method: str, path: str, body: dict | None = None, *, admin: bool = False,
           expect: tuple[int, ...] = (200, 201, 202), cookie: str | None = None) -> dict:
        status, payload = self.request(method, path, body, admin=admin, cookie=cookie)
        if status not in expect:
            raise SmokeFailure(f"{method} {path} -> {status}: {json.dumps(payload)[:400]}")
        return payload

    def visitor_cookie(self) -> str:
        """A visitor's signed client cookie, as a browser keeps it (only its own predictions are ratable)."""
        headers: dict = {}
        self.request("GET", "/api/v1/me", response_headers=headers)
        return headers.get("set-cookie", "").split(";")[0]

    def sample_memory(self, stage: str) -> None:
        self.memory_stages.append((stage, [rss_mb(pid) for pid in sorted(self.worker_pids())]))

    def worker_pids(self) -> list[int]:
        master = self.processes["web"].pid
        pids = [pid for pid in descendants(master) if "gunicorn" in cmdline(pid)]
        return [pid for pid in pids if "gunicorn" in cmdline(parent_of(pid))]

    def serving(self, attempts: int = 60) -> dict[int, dict]:
        """What each web worker serves, from /healthz asked concurrently until every worker answered."""
        seen: dict[int, dict] = {}
        workers = set(self.worker_pids())
        with ThreadPoolExecutor(8) as pool:
            for _ in range(attempts):
                for status, body in pool.map(lambda _: self.request("GET", "/healthz"), range(8)):
                    if "pid" in body:
                        seen[body["pid"]] = body["checks"]["models"].get("versions", {})
                if workers <= set(seen):
                    break
        return seen

    def wait_until_all_serve(self, wanted: dict[str, int], timeout: float = 30) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            seen = self.serving()
            if set(seen) >= set(self.worker_pids()) and all(v == wanted for v in seen.values()):
                return time.monotonic() - started
            time.sleep(0.2)
        raise SmokeFailure(f"web workers still serve {self.serving()} rather than {wanted} after {timeout:.0f} s")

    # ---- the scenario ------------------------------------------------------------------------

    def scenario(self) -> None:
        procfile = self.procfile()
        with self.phase("services: PostgreSQL database, Redis db 14, moto S3"):
            self.start_services()
            print(f"   database {self.database}, {REDIS_URL}, S3 http://127.0.0.1:{self.s3_port}/{BUCKET}, "
                  f"web :{self.port}, scratch {self.tmp}")

        with self.phase("release: " + procfile["release"]):
            self.run("release", procfile["release"])
            again = self.run("release again", procfile["release"])
            self.check("release is repeatable", again.returncode == 0)

        models = self.tmp / "base-models"
        with self.phase("post-deploy: base models (trained small) and `models import-base`"):
            empty = self.run("import-base", f"flask --app webapp models import-base --path {models}", expect_ok=False)
            self.check("import-base on an empty registry with no trained models asks for training",
                       empty.returncode != 0 and "train first" in empty.stderr + empty.stdout)
            self.run("train", f"python -m training.train --out {models} --epochs 1 --train-limit 3000", timeout=400)
            imported = self.run("import-base", f"flask --app webapp models import-base --path {models}")
            self.require("base models registered as v1", imported.stdout.count("registered v1") == 2, imported.stdout)
            repeat = self.run("import-base again", f"flask --app webapp models import-base --path {models}")
            self.check("import-base is idempotent", repeat.stdout.count("nothing to import") == 2, repeat.stdout.strip())

        with self.phase("admin user and token (CLI)"):
            self.run("create-admin", "flask --app webapp users create-admin smoke-admin --password 'smoke-password-1'")
            issued = self.run("issue-token", "flask --app webapp users issue-token smoke-admin")
            self.token = issued.stdout.strip().splitlines()[-1]

        with self.phase(f"start: web ({WEB_WORKERS} gunicorn workers) and worker (Celery), from the Procfile"):
            self.spawn("web", procfile["web"], env=self.env)
            self.spawn("worker", procfile["worker"], env=self.env)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for name in ("web", "worker"):
                    if self.processes[name].poll() is not None:
                        raise SmokeFailure(f"{name} exited with {self.processes[name].returncode}")
                try:
                    status, body = self.request("GET", "/healthz", timeout=5)
                    if status == 200 and len(self.worker_pids()) == WEB_WORKERS:
                        break
                except OSError:
                    pass
                time.sleep(0.3)
            else:
                raise SmokeFailure("web never became ready (/healthz)")
            self.require("/healthz ready: database, storage, models", status == 200, json.dumps(body["checks"]))
            while time.monotonic() < deadline and b"ready." not in (self.tmp / "worker.out").read_bytes() + (
                    self.tmp / "worker.err").read_bytes():
                time.sleep(0.3)
            self.check("Celery worker ready", self.processes["worker"].poll() is None)
            seen = self.serving()
            self.require("both web workers loaded v1 after the fork", len(seen) == WEB_WORKERS and all(
                v == {"fnn": 1, "cnn": 1} for v in seen.values()), str(seen))
            self.sample_memory("ready, v1 loaded")

        drawings = canvas_drawings(CONTRIBUTIONS + PREDICTIONS + BURST)
        contributions, predictions, burst = (drawings[:CONTRIBUTIONS], drawings[CONTRIBUTIONS:-BURST],
                                             drawings[-BURST:])
        with self.phase(f"traffic: {len(predictions)} predictions rated, {len(contributions)} contributions"):
            # Several people rate: a holdout one of them made most of would not count as evidence.
            visitors = [self.visitor_cookie() for _ in range(RATERS)]
            cookies = [visitors[index % RATERS] for index in range(len(predictions))]
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda d, cookie: self.ok("POST", "/api/v1/predictions", {"image": d[0]},
                                                                  cookie=cookie), predictions, cookies))
            self.require("every prediction has both networks at v1", all(
                {a["predictions"][n]["model_version"] for n in ("fnn", "cnn")} == {1} for a in answers))
            correct = sum(a["predictions"]["cnn"]["label"] == d[1] for a, d in zip(answers, predictions))
            print(f"   base CNN right on {correct}/{len(predictions)} canvas drawings")
            self.answered_ids += [a["id"] for a in answers if a.get("id")]
            rated, early = 0, 0
            for answer, (_, label), cookie in zip(answers, predictions, cookies):
                for attempt in range(50):
                    status, body = self.request("POST", f"/api/v1/predictions/{answer['id']}/feedback",
                                                {"label": label}, cookie=cookie)
                    if status != 404:  # 404: the write-behind has not stored it yet
                        break
                    early += attempt == 0
                    time.sleep(0.1)
                rated += status == 201
            self.check("every prediction rated (feedback)", rated == len(answers),
                       f"{rated}/{len(answers)}; {early} rated before the write-behind stored them got a 404 first")
            wrong = set(range(MISLABELLED))
            saved = []
            for index, (image, label) in enumerate(contributions):
                claimed = (label + 1) % 10 if index in wrong else label
                saved.append((self.ok("POST", "/api/v1/drawings", {"image": image, "label": claimed}), index))
            self.check("contributions stored as pending", all(s["status"] == "pending" for s, _ in saved))
            self.sample_memory("after predictions, ratings and contributions")

        with self.phase("review: the admin confirms the good drawings and rejects the mislabelled"):
            feedback = [a["id"] for a in answers]
            for drawing_id in feedback:
                self.ok("POST", f"/api/v1/drawings/{drawing_id}/review", {"status": "confirmed"}, admin=True)
            for body, index in saved:
                status = "rejected" if index in wrong else "confirmed"
                self.ok("POST", f"/api/v1/drawings/{body['id']}/review", {"status": status}, admin=True)
            stats = self.ok("GET", "/api/v1/stats")
            print(f"   drawings by status: {stats['drawings']['by_status']}")
            unauthorized, _ = self.request("POST", "/api/v1/training-runs", {})
            self.check("training runs need an admin token", unauthorized == 401, str(unauthorized))

        with self.phase("retrain: POST /api/v1/training-runs, the Celery worker fine-tunes both networks"):
            run = self.ok("POST", "/api/v1/training-runs", {}, admin=True)
            peaks: dict[int, float] = {}
            deadline = time.monotonic() + 420
            while time.monotonic() < deadline:
                run = self.ok("GET", f"/api/v1/training-runs/{run['id']}", admin=True)
                for pid in [self.processes["worker"].pid] + descendants(self.processes["worker"].pid):
                    peaks[pid] = max(peaks.get(pid, 0.0), peak_rss_mb(pid))
                if run["status"] not in ("queued", "running"):
                    break
                time.sleep(1)
            self.worker_peaks = {cmdline(pid).split(" ")[0].rsplit("/", 1)[-1] + f" {pid}": mb
                                 for pid, mb in peaks.items() if mb}
            for name, entry in run.get("result", {}).items():
                print(f"   {name}: {entry.get('decision')} v{entry.get('version')}: {entry.get('reason')}")
            self.require("the run succeeded", run["status"] == "succeeded", f"{run['status']} {run.get('error')}")
            promoted = {name: entry["version"] for name, entry in run["result"].items()
                        if entry.get("decision") == "promoted"}
            self.require("a version was promoted", bool(promoted), json.dumps(run["result"])[:300])

        with self.phase("hot swap: both web workers pick up the promoted version"):
            listed = self.ok("GET", "/api/v1/models")
            active = {m["name"]: next(v["version"] for v in m["versions"] if v["active"]) for m in listed["models"]}
            self.require("the API lists the promoted versions as active",
                         all(active[name] == version for name, version in promoted.items()), str(active))
            took = self.wait_until_all_serve(active)
            self.check("every web worker serves the new versions", True, f"{active} within {took:.1f} s")
            answer = self.ok("POST", "/api/v1/predictions", {"image": burst[0][0]})
            self.check("predictions name the new versions", {
                n: answer["predictions"][n]["model_version"] for n in active} == active)
            self.answered_ids += [answer["id"]] if answer.get("id") else []
            self.sample_memory("after the swap to the promoted versions")

        with self.phase("rollback: POST /api/v1/models/<name>/versions/1/activate"):
            for name in promoted:
                self.ok("POST", f"/api/v1/models/{name}/versions/1/activate", {}, admin=True)
            took = self.wait_until_all_serve({"fnn": 1, "cnn": 1})
            self.check("every web worker rolled back to v1", True, f"within {took:.1f} s")
            self.sample_memory("after the rollback")

        with self.phase(f"burst of {BURST} predictions, then SIGTERM to web and worker"):
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda d: self.ok("POST", "/api/v1/predictions", {"image": d[0]}), burst))
            self.answered_ids += [a["id"] for a in answers if a.get("id")]
            self.check("every answered prediction has an id to rate",
                       sum(bool(a.get("id")) for a in answers) == len(answers))
            self.sample_memory(f"after the burst of {BURST}")
            self.memory = {pid: (rss_mb(pid), peak_rss_mb(pid)) for pid in sorted(self.worker_pids())}
            for pid, (rss, peak) in self.memory.items():
                self.check(f"web worker {pid} RSS <= {RSS_FLOOR_MB:.0f} MB", rss <= RSS_FLOOR_MB,
                           f"{rss:.0f} MB now, {peak:.0f} MB peak")
            for name in ("web", "worker"):
                took, code = self.stop(name)
                self.check(f"{name} stopped on SIGTERM within Heroku's {HEROKU_GRACE_SECONDS} s",
                           code is not None, f"{took:.1f} s, exit code {code}")

        with self.phase("nothing lost: rows against objects"):
            self.reconcile()
            self.check_logs()

    def reconcile(self) -> None:
        import psycopg
        import redis

        url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{self.database}"
        with psycopg.connect(url) as connection:
            rows = dict(connection.execute("SELECT id, object_key FROM drawings").fetchall())
            versions = connection.execute("SELECT name, version, object_prefix, status FROM model_versions").fetchall()
            live = connection.execute(
                "SELECT count(*) FROM training_runs WHERE status IN ('queued', 'running')").fetchone()[0]
        objects = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            objects |= {item["Key"] for item in page.get("Contents", [])}
        drawing_objects = {key for key in objects if key.startswith("drawings/")}
        keys = set(rows.values())
        missing = keys - drawing_objects
        orphans = drawing_objects - keys
        self.check("every drawing row has its object", not missing, f"{len(rows)} rows, {len(missing)} missing")
        self.check("every drawing object has its row", not orphans, f"{len(drawing_objects)} objects, "
                                                                    f"{len(orphans)} orphans")
        lost = [drawing_id for drawing_id in self.answered_ids if drawing_id not in rows]
        self.check("every answered prediction was stored (write-behind drained at shutdown)", not lost,
                   f"{len(self.answered_ids) - len(lost)}/{len(self.answered_ids)}")
        expected = CONTRIBUTIONS + len(set(self.answered_ids))
        self.check("drawing rows = contributions + answered predictions", len(rows) == expected,
                   f"{len(rows)} rows, {expected} expected")
        files = {f"{prefix}{name}" for _, _, prefix, _ in versions for name in ("model.onnx", "model.keras",
                                                                             "manifest.json")}
        model_objects = {key for key in objects if key.startswith("models/")}
        self.check("every model version has its files", files <= model_objects,
                   f"{len(versions)} versions: " + ", ".join(f"{n} v{v} {s}" for n, v, _, s in sorted(versions)))
        self.check("every model object belongs to a version", model_objects <= files,
                   f"{len(model_objects - files)} stray")
        self.check("no training run left queued or running", live == 0)
        queued = redis.Redis.from_url(REDIS_URL).llen("celery")
        self.check("no task left in the Redis queue", queued == 0, f"{queued} queued")

    def check_logs(self) -> None:
        lines = (self.tmp / "web.out").read_text(errors="replace").splitlines()
        parsed, other = [], []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                other.append(line)
        self.check("web logs are JSON lines", parsed and not other,
                   f"{len(parsed)} JSON, {len(other)} other" + (f": {other[0][:120]!r}" if other else ""))
        tagged = [entry for entry in parsed if str(entry.get("request_id", "")).startswith("smoke-")]
        self.check("log lines written during a request carry its X-Request-ID", bool(tagged),
                   tagged[0]["message"][:80] if tagged else "none")

    # ---- the end -----------------------------------------------------------------------------

    def cleanup(self) -> None:
        for name in ("web", "worker", "s3"):
            process = self.processes.get(name)
            if process is not None and (process.poll() is None or group_alive(process.pid)):
                self.stop(name, sig=signal.SIGKILL if name != "s3" else signal.SIGTERM, grace=10)
        try:
            import psycopg
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
            if not self.args.keep:
                with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                    connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        except Exception as exc:
            print(f"cleanup: {exc}")
        if self.args.keep:
            print(f"kept {self.tmp} and database {self.database}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def show_logs(self) -> None:
        for name in ("web", "worker", "s3"):
            for stream in ("out", "err"):
                path = self.tmp / f"{name}.{stream}"
                if path.exists() and path.stat().st_size:
                    tail = path.read_text(errors="replace").splitlines()[-25:]
                    print(f"---- {name} std{stream} (last {len(tail)} lines)")
                    print("\n".join(tail))

    def summary(self, failure: str | None) -> bool:
        print("\nTimings")
        for name, seconds in self.timings:
            print(f"  {seconds:7.1f} s  {name}")
        print(f"  {time.monotonic() - self.started:7.1f} s  total")
        if self.memory_stages:
            print("\nMemory of each web worker (VmRSS, MB)")
            for stage, values in self.memory_stages:
                print(f"  {', '.join(f'{value:5.0f}' for value in values)}  {stage}")
        if getattr(self, "memory", None):
            for pid, (rss, peak) in self.memory.items():
                print(f"  gunicorn worker {pid}: {rss:.0f} MB after traffic (peak {peak:.0f} MB), "
                      f"floor {RSS_FLOOR_MB:.0f} MB")
        if getattr(self, "worker_peaks", None):
            print("  Celery worker processes during the training run (VmHWM): " + ", ".join(
                f"{name} {mb:.0f} MB" for name, mb in self.worker_peaks.items()))
        failed = [c for c in self.checks if not c[1]]
        print(f"\n{len(self.checks) - len(failed)}/{len(self.checks)} checks passed")
        for name, _, detail in failed:
            print(f"  FAIL {name}: {detail}")
        if failure:
            print(f"  FAIL {failure}")
        passed = not failed and failure is None
        print("PASS" if passed else "FAIL")
        return passed


# ---- helpers ---------------------------------------------------------------------------------

def canvas_drawings(count: int) -> list[tuple[str, int]]:
    """Canvas-like drawings (data URLs) of MNIST test digits, every variant, with their labels."""
    from training.devset import VARIANTS, generate
    from training.mnist import load_mnist

    mnist = load_mnist(source=os.environ.get("MNIST_PATH") or None,
                       cache_path=ROOT / "instance" / "data" / "mnist.npz")
    per_variant = -(-count // len(VARIANTS))
    drawings = generate(mnist.x_test, mnist.y_test, per_variant=per_variant, seed=6)
    # generate() groups them by variant; interleave, so that every slice has every variant.
    order = sorted(range(len(drawings)), key=lambda i: (i % per_variant, i))
    return [(drawings[i].data_url, drawings[i].label) for i in order[:count]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SmokeFailure(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SmokeFailure(f"nothing listens on {port} after {timeout:.0f} s")


def _status(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    return _status(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float:
    return _status(pid, "VmHWM")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent_of(pid: int) -> int:
    try:
        return int(re.search(r"^PPid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
    except (OSError, AttributeError):
        return 0


def descendants(pid: int) -> list[int]:
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child] + descendants(child)
    return found


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and database for a look")
    parser.add_argument("--timeout", type=float, default=600, help="the whole smoke's budget in seconds")
    args = parser.parse_args()
    smoke = Smoke(args)
    failure = None

    def interrupted(signum, _frame):
        raise SmokeFailure(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    try:
        smoke.scenario()
    except (SmokeFailure, KeyboardInterrupt, Exception) as exc:
        failure = f"{exc.__class__.__name__}: {exc}"
        if not isinstance(exc, SmokeFailure):
            import traceback

            traceback.print_exc()
        smoke.show_logs()
    finally:
        smoke.cleanup()
    return 0 if smoke.summary(failure) else 1


if __name__ == "__main__":
    sys.exit(main())
