"""Celery end to end: the machine's real Redis, a real `celery worker` process and real training,
including what happens when the worker is killed (as the OOM killer does) or stopped (as Heroku does)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ModelVersion, TrainingRun

from tests.webapp.conftest import make_app, serve
from tests.webapp.test_retraining import contribute

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CELERY = ROOT / ".venv" / "bin" / "celery"
REDIS_DB = 11  # a database of its own, flushed before and after each test
READY_TIMEOUT = 60
RUN_TIMEOUT = 180
# Heroku sends SIGKILL this long after SIGTERM.
HEROKU_GRACE_SECONDS = 30
NETWORKS = ("fnn", "cnn")
# Broker semantics do not depend on the database; the shutdown tests run once, on the database
# deployments use, rather than twice.
ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def redis_connection():
    import redis

    connection = redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}", socket_connect_timeout=2)
    try:
        connection.ping()
    except redis.RedisError as exc:
        message = f"Redis unreachable at 127.0.0.1:6379: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def redis_app(database_url, tmp_path, tiny_models, redis_connection):
    """The app on Redis, with an object store folder of its own, so no other test's files are seen."""
    app = make_app(database_url, tmp_path / "objects", tmp_path / "instance",
                   REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}", AUTO_CONFIRM=True, RETRAIN_EVERY=0)
    yield from serve(app, tiny_models[0])


@pytest.fixture
def client(redis_app):
    return redis_app.test_client()


@pytest.fixture
def admin_token(redis_app):
    runner = redis_app.test_cli_runner()
    runner.invoke(args=["users", "create-admin", "root", "--password", "long enough"])
    token = runner.invoke(args=["users", "issue-token", "root"]).output.strip().splitlines()[-1]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def drawings(mnist):
    from training.devset import generate

    return generate(mnist.x_test, mnist.y_test, per_variant=6, seed=31)  # 66 canvas drawings


class Worker:
    """A real `celery worker` process, configured through the environment like a deployed one."""

    def __init__(self, app, log_path: Path, **env: str):
        from training.mnist import default_cache_path

        instance = Path(app.config["INSTANCE_PATH"])
        # The worker reads MNIST from its instance folder: give it the session's cache.
        cache = instance / "data" / "mnist.npz"
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.symlink_to(default_cache_path().resolve())
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "LOCAL_STORAGE_PATH": app.config["LOCAL_STORAGE_PATH"],
            "S3_BUCKET": "",
            "INKLING_INSTANCE_PATH": str(instance),
            "MODELS_PATH": app.config["MODELS_PATH"],
            "REDIS_URL": app.config["REDIS_URL"] or "",
            "FINETUNE_EPOCHS": "1",
            "FINETUNE_MNIST_MINIMUM": "500",
            "AUTO_CONFIRM": "1",
            "RETRAIN_EVERY": "0",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        command = [str(CELERY), "-A", "workers.celery_app", "worker", "--loglevel=INFO", "--concurrency=1",
                   "--pool=prefork", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"]
        with open(self.log_path, "ab") as log:
            # A process group of its own, so that the pool processes end with it.
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            if " ready." in self.log():
                return self
            time.sleep(0.2)
        raise AssertionError(f"the worker did not become ready:\n{self.log()[-3000:]}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def deliveries(self, task_id: str) -> int:
        return self.log().count(f"inkling.fine_tune_models[{task_id}] received")

    def pool_process(self, *, timeout: float = 30) -> int:
        """The pid of the one prefork pool process (--concurrency=1)."""
        deadline = time.monotonic() + timeout
        while True:
            children = []
            for listing in Path(f"/proc/{self.pid}/task").glob("*/children"):
                try:
                    children += [int(pid) for pid in listing.read_text().split()]
                except OSError:  # the thread ended meanwhile
                    pass
            if len(children) == 1:
                return children[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"expected one pool process, found {children}")
            time.sleep(0.1)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 20 s, then whatever is left of its process group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            if self.wait(20) is None:
                self.process.kill()
                self.process.wait(10)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # pool processes orphaned by a killed parent
        except ProcessLookupError:
            pass


@pytest.fixture
def workers(redis_app, tmp_path):
    """``workers(**env)`` starts a worker; every worker started is stopped at the end."""
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker(redis_app, tmp_path / f"worker-{len(started)}.log", **env)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


def fetch(client, headers, run_id: str) -> dict:
    response = client.get(f"/api/v1/training-runs/{run_id}", headers=headers)
    assert response.status_code == 200
    return response.json


def wait_for(client, headers, run_id: str, done, *, worker: Worker, timeout: float = RUN_TIMEOUT,
             interval: float = 0.5, seen: list | None = None) -> dict:
    """Poll the run until ``done(body)``, appending every body to ``seen``."""
    deadline = time.monotonic() + timeout
    while True:
        body = fetch(client, headers, run_id)
        if seen is not None:
            seen.append(body)
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is still {body['status']} {body['progress']} after {timeout} s; "
                                 f"the worker said:\n{worker.log()[-3000:]}")
        time.sleep(interval)


def finished(body: dict) -> bool:
    return body["status"] not in ("queued", "running")


def fine_tuning(name: str):
    """True once the run is between loading network ``name``'s parent and publishing its candidate."""
    def check(body: dict) -> bool:
        assert not finished(body), f"the run ended before it could be interrupted: {body}"
        progress = body["progress"]
        return progress.get("model") == name and progress.get("phase") in ("evaluating parent", "training")
    return check


def start_run(client, headers, drawings) -> tuple[str, str]:
    """Contribute 60 drawings (auto-confirmed), ask for a run; its id and Celery task id."""
    contribute(client, drawings[:60])
    response = client.post("/api/v1/training-runs", headers=headers)
    assert response.status_code == 202 and response.json["created"], response.json
    return response.json["id"], task_id(client.application, response.json["id"])


def task_id(app, run_id: str) -> str:
    with app.app_context():
        value = db.session.get(TrainingRun, run_id).task_id
        db.session.remove()
    assert value
    return value


def versions(app) -> list[tuple[str, int, str, int | None, str | None]]:
    """(name, version, status, parent, training run) of every version."""
    with app.app_context():
        rows = db.session.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)).all()
        result = [(row.name, row.version, row.status, row.parent_version, row.training_run_id) for row in rows]
        db.session.remove()
    return result


def active(app) -> dict[str, int]:
    return {name: version for name, version, status, _, _ in versions(app) if status == "active"}


def published_by(app, run_id: str) -> list[tuple[str, int, int | None]]:
    return sorted((name, version, parent) for name, version, _, parent, run in versions(app) if run == run_id)


def assert_store_complete(app) -> None:
    """Every version row's files are in the store: nothing half-published is ever visible."""
    store = app.extensions["inkling.store"]
    with app.app_context():
        for row in db.session.scalars(select(ModelVersion)):
            assert store.exists(row.onnx_key), f"{row.name} v{row.version} has no ONNX file"
        db.session.remove()


def assert_finished_with_one_version_per_network(app, body: dict, run_id: str) -> None:
    assert body["status"] in ("succeeded", "rejected"), body
    assert published_by(app, run_id) == [("cnn", 2, 1), ("fnn", 2, 1)], versions(app)
    assert_store_complete(app)
    with app.app_context():
        assert db.session.get(TrainingRun, run_id).lock is None
        db.session.remove()


def test_a_run_goes_through_redis_to_a_real_worker(redis_app, client, admin_token, drawings, workers):
    """Redis carries the task to a worker process, which reports rising progress, fine-tunes both
    networks and publishes version 2 of each; a promoted version serves the next prediction."""
    # Three epochs of 3,000 MNIST digits and a poll every 0.1 s, so that a "training" report
    # (it lasts an epoch) is seen: on a quiet machine, epochs of 500 took less than a 0.5 s poll.
    worker = workers(FINETUNE_EPOCHS="3", FINETUNE_MNIST_MINIMUM="3000")
    run_id, _ = start_run(client, admin_token, drawings)

    seen: list[dict] = []
    body = wait_for(client, admin_token, run_id, finished, worker=worker, seen=seen, interval=0.1)
    assert_finished_with_one_version_per_network(redis_app, body, run_id)
    progress = [entry["progress"] for entry in seen]
    percents = [entry.get("percent", 0.0) for entry in progress]
    assert percents == sorted(percents), progress
    assert any(entry.get("phase") == "training" and entry.get("epoch") for entry in progress), progress
    assert progress[-1]["phase"] == "done" and percents[-1] == 100.0

    answer = client.post("/api/v1/predictions", json={"image": drawings[60].data_url}).json
    for name in NETWORKS:
        decision = body["result"][name]["decision"]
        assert decision in ("promoted", "rejected"), body["result"][name]
        assert answer["predictions"][name]["model_version"] == (2 if decision == "promoted" else 1)


@ON_POSTGRESQL
def test_a_pool_process_killed_mid_training_is_redelivered_and_resumed(redis_app, client, admin_token,
                                                                       drawings, workers):
    """SIGKILL of the pool process, as the OOM killer does, while a run fine-tunes.

    Observed: billiard reports WorkerLostError at once; with acks_late and reject_on_worker_lost the
    worker rejects the message with requeue, Redis has it back straight away (no wait for the 4 h
    visibility timeout), and the worker's new pool process runs the same task again. The run
    resumes: a network the run already published is kept, the other one is fine-tuned again.
    Killed twice: while fnn fine-tunes (nothing published yet), and while cnn does (fnn v2 is out).
    """
    worker = workers()
    run_id, task = start_run(client, admin_token, drawings)

    wait_for(client, admin_token, run_id, fine_tuning("fnn"), worker=worker, interval=0.2)
    first = worker.pool_process()
    os.kill(first, signal.SIGKILL)
    assert active(redis_app) == {"fnn": 1, "cnn": 1}
    assert published_by(redis_app, run_id) == []
    assert_store_complete(redis_app)

    wait_for(client, admin_token, run_id, fine_tuning("cnn"), worker=worker, interval=0.2)
    second = worker.pool_process()
    assert second != first
    os.kill(second, signal.SIGKILL)
    assert active(redis_app)["cnn"] == 1
    assert published_by(redis_app, run_id) == [("fnn", 2, 1)]
    assert_store_complete(redis_app)

    body = wait_for(client, admin_token, run_id, finished, worker=worker)
    assert_finished_with_one_version_per_network(redis_app, body, run_id)
    assert worker.deliveries(task) == 3, worker.log()[-3000:]
    assert "WorkerLostError" in worker.log()


@ON_POSTGRESQL
def test_heroku_shutdown_hands_the_run_to_the_next_worker(redis_app, client, admin_token, drawings, workers,
                                                          redis_connection):
    """SIGTERM to every process of the worker, as Heroku stops a dyno, with REMAP_SIGTERM=SIGQUIT as
    the Procfile sets it.

    Observed: SIGTERM means Celery's cold shutdown; the worker cancels the task (its pool process
    ends), restores the unacknowledged message to the Redis queue ("Restoring 1 unacknowledged
    message(s)") and exits within a few seconds, well inside Heroku's 30 s. The run stays
    "running" until the next worker receives the same message and resumes it.
    """
    first = workers(REMAP_SIGTERM="SIGQUIT")
    run_id, task = start_run(client, admin_token, drawings)
    wait_for(client, admin_token, run_id, fine_tuning("cnn"), worker=first, interval=0.2)
    os.killpg(first.pid, signal.SIGTERM)
    assert first.wait(HEROKU_GRACE_SECONDS) is not None, "the worker outlived Heroku's grace period"

    assert fetch(client, admin_token, run_id)["status"] == "running"
    queued = redis_connection.lrange("celery", 0, -1)
    assert len(queued) == 1 and task.encode() in queued[0], "the message was not put back in the queue"
    assert active(redis_app)["cnn"] == 1
    assert published_by(redis_app, run_id) == [("fnn", 2, 1)]
    assert_store_complete(redis_app)

    second = workers(REMAP_SIGTERM="SIGQUIT")
    body = wait_for(client, admin_token, run_id, finished, worker=second)
    assert_finished_with_one_version_per_network(redis_app, body, run_id)
    assert first.deliveries(task) == 1 and second.deliveries(task) == 1


@ON_POSTGRESQL
def test_a_whole_worker_killed_leaves_a_stale_run_that_the_next_request_fails(redis_app, client, admin_token,
                                                                              drawings, workers,
                                                                              redis_connection):
    """SIGKILL of the whole worker (the dyno crashes): nobody is left to requeue the message.

    Observed: the message stays in Redis's "unacked" set, to be restored only after the 4 h
    visibility timeout; the run reports no more progress. The next request for a run fails it
    once its heartbeat is STALE_RUN_SECONDS old and queues a new one; the versions are untouched.
    """
    worker = workers()
    run_id, task = start_run(client, admin_token, drawings)
    wait_for(client, admin_token, run_id, fine_tuning("fnn"), worker=worker, interval=0.2)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)

    killed = time.monotonic()

    assert redis_connection.llen("celery") == 0
    unacked = redis_connection.hvals("unacked")
    assert len(unacked) == 1 and task.encode() in unacked[0], unacked
    redis_app.config["STALE_RUN_SECONDS"] = 5
    again = client.post("/api/v1/training-runs", headers=admin_token).json
    assert again["id"] == run_id and not again["created"]  # not stale yet: still the live run
    time.sleep(max(0.0, killed + 6 - time.monotonic()))
    fresh = client.post("/api/v1/training-runs", headers=admin_token)
    assert fresh.status_code == 202 and fresh.json["created"] and fresh.json["id"] != run_id
    stale = fetch(client, admin_token, run_id)
    assert stale["status"] == "failed" and "stopped reporting" in stale["error"]
    assert active(redis_app) == {"fnn": 1, "cnn": 1} and published_by(redis_app, run_id) == []
    assert_store_complete(redis_app)


@pytest.fixture
def embedded_app(database_url, tmp_path, tiny_models):
    """The laptop default: no REDIS_URL, so Celery runs on kombu's SQLite transport."""
    if "postgresql" in database_url:
        pytest.skip("the embedded broker is the no-server default; it is exercised with SQLite")
    app = make_app(database_url, tmp_path / "objects", tmp_path / "instance", REDIS_URL=None,
                   AUTO_CONFIRM=True, RETRAIN_EVERY=0)
    yield from serve(app, tiny_models[0])


def test_a_run_goes_through_the_embedded_sqlite_broker(embedded_app, drawings, tmp_path):
    """What `make run` starts with nothing configured: the same run, through a SQLite broker."""
    runner = embedded_app.test_cli_runner()
    runner.invoke(args=["users", "create-admin", "embedded", "--password", "long enough"])
    token = runner.invoke(args=["users", "issue-token", "embedded"]).output.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    worker = Worker(embedded_app, tmp_path / "worker.log").start()
    try:
        client = embedded_app.test_client()
        run_id, _ = start_run(client, headers, drawings)
        body = wait_for(client, headers, run_id, finished, worker=worker)
        assert_finished_with_one_version_per_network(embedded_app, body, run_id)
    finally:
        worker.stop()
