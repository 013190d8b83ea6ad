"""What every benchmark shares: gunicorn on a free loopback port, a process's memory, the floors printout."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from training import instance_path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtualenv's bin: gunicorn, flask


def models_path() -> Path:
    """The base models `make models` trained (instance/models)."""
    return instance_path() / "models"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since the process started) of ``pid``, in MB; zeros if it is gone."""
    fields = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return fields
    for line in lines:
        key, _, value = line.partition(":")
        if key in fields:
            fields[key] = int(value.split()[0]) / 1024
    return fields


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of ``pid`` now, in MB (0 if it is gone)."""
    return memory_mb(pid)["VmRSS"]


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers, say), in pid order."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return sorted(found)


class RssSampler(threading.Thread):
    """The highest VmRSS of a process seen while running."""

    def __init__(self, pid: int, interval: float = 0.01):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


def bench_env(instance: str | Path, **extra: str) -> dict:
    """The environment of a throwaway deployment in ``instance``: SQLite, local objects, no rate limits.

    One address stands in for many clients here: per-address rate limits would only measure themselves.
    """
    env = {**os.environ, "INKLING_INSTANCE_PATH": str(instance), "RATELIMIT_ENABLED": "0", **extra}
    for name in ("DATABASE_URL", "S3_BUCKET"):
        if name not in extra:
            env.pop(name, None)
    return env


def flask(env: dict, *args: str) -> str:
    """Run `flask --app webapp ARGS` in ``env``; its output, or exit with it on failure."""
    done = subprocess.run([str(BIN / "flask"), "--app", "webapp", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class Gunicorn:
    """gunicorn serving the app on a free loopback port, until the ``with`` block ends.

    By default as the Procfile's web line runs it (gunicorn.conf.py); ``args`` replace that
    with explicit settings. ``healthy`` waits for /healthz to say 200 from every worker (models
    loaded); otherwise any answer will do.
    """

    def __init__(self, env: dict, log_path: Path | None = None, *, args: list[str] | None = None,
                 healthy: bool = True, workers: int | None = None, timeout: float = 90):
        self.env, self.log_path, self.healthy, self.timeout = env, log_path, healthy, timeout
        self.args = args if args is not None else ["--config", "gunicorn.conf.py"]
        self.expected_workers = workers or int(env.get("WEB_CONCURRENCY", 2))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._log = None

    def __enter__(self) -> Gunicorn:
        self._log = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), *self.args, "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
             "webapp:create_app()"],
            env={**self.env, "PORT": str(self.port)}, cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None)
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited{self._log_tail()}")
            try:
                status, _ = self.request("/healthz")
                if not self.healthy or (status == 200 and len(self.workers()) == self.expected_workers):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not become ready in {self.timeout:.0f} s{self._log_tail()}")
            time.sleep(0.5)
        if self.healthy:
            # Every worker loads its models right after the fork (post_worker_init); one request
            # each for good measure, so no measurement pays for a first request.
            for _ in range(4 * self.expected_workers):
                self.request("/healthz")

    def _log_tail(self) -> str:
        return f"; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}" if self.log_path else ""

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._log:
            self._log.close()

    def request(self, path: str, *, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST" if body is not None else "GET", path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def workers(self) -> list[int]:
        return children(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid


def print_floors(title: str, checks: list[tuple[str, bool]]) -> int:
    """Print each floor as PASS or FAIL under ``title``; the exit status (0 when all pass)."""
    print(f"\n{title}")
    for label, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {label}")
    return 0 if all(passed for _, passed in checks) else 1
