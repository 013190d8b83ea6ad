"""Cold start of a new label set: six procedural doodle classes, both networks trained from scratch.

    python -m bench.label_sets [--offline] [--seeds 0 1 2] [--per-class 60] [--held-out 300]

By default end to end through the product's HTTP API (gunicorn and a Celery worker, SQLite and
the local store in a temporary folder): the set ``shapes`` is created with
`flask --app webapp label-sets create`, --per-class drawings of each class (training.doodles,
image and strokes as the canvas sends them) are contributed to /api/v1/drawings, confirmed
through the admin's bulk review, the run the product starts (or the admin asks for) is waited
for, and --held-out other drawings are sent to /api/v1/predictions. Prints each network's
accuracy and the run's time.

``--offline`` measures the same without the web app, one run per seed: generator ->
training.preprocess (as an upload) -> training.scratch.train_from_scratch -> ONNX export ->
accuracy of the exported graph, as serving would answer. Both print the floors of issue #17
and exit 1 if one fails.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.harness import BIN, ROOT, Gunicorn, flask, models_path, print_floors
from bench.load import base_env, busy_note
from training import MODEL_NAMES
from training.doodles import CLASSES, Doodle, doodle_batch
from training.preprocess import preprocess

SET = "shapes"
TIME_LIMIT_SECONDS = 180.0  # issue #17: the first run, both networks, on 2 cores
FLOORS = {"cnn": 0.90, "fnn": 0.85}
HELD_OUT_SEED = 1000  # held-out drawings come from seed + this: never the training drawings
REVIEW_BATCH = 500  # the bulk review endpoint's limit
RUN_TIMEOUT_SECONDS = 1200.0
FINISHED = ("succeeded", "rejected", "failed")


def drawings(seed: int, args) -> tuple[list[Doodle], list[Doodle]]:
    """The contributed drawings (--per-class of each class) and the held-out ones, apart by seed."""
    return (doodle_batch(args.per_class * len(CLASSES), seed=seed),
            doodle_batch(args.held_out, seed=seed + HELD_OUT_SEED))


def as_stored(doodles: list[Doodle]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels as the product stores an upload (training.preprocess), and class indexes."""
    return (np.stack([preprocess(d.data_url).pixels for d in doodles]),
            np.array([d.label for d in doodles], np.int64))


# ---- offline: the library alone -----------------------------------------------------------

def offline_seed(seed: int, args) -> dict:
    """Train both networks from scratch on one seed's drawings; accuracy of their ONNX exports."""
    from training.export import export_onnx
    from training.predictor import OnnxModel
    from training.scoring import score
    from training.scratch import train_from_scratch

    train, held_out = drawings(seed, args)
    x, y = as_stored(train)
    held_x, held_y = as_stored(held_out)
    result = {"seconds": {}, "accuracy": {}, "by_class": {}}
    with tempfile.TemporaryDirectory(prefix="inkling-label-sets-") as tmp:
        for name in MODEL_NAMES:
            started, cpu = time.perf_counter(), time.process_time()
            model = train_from_scratch(name, x, y, num_classes=len(CLASSES), seed=seed)
            trained = time.perf_counter()
            export_onnx(model, Path(tmp) / f"{name}.onnx")
            served = OnnxModel(Path(tmp) / f"{name}.onnx", name=name, version=0, num_classes=len(CLASSES))
            # CPU seconds (all threads) as well as wall: on a shared machine the wall clock
            # mostly measures the other jobs.
            result["seconds"][name] = (trained - started, time.perf_counter() - trained, time.process_time() - cpu)
            scores = score(served, held_x, held_y)
            result["accuracy"][name] = scores.accuracy()
            result["by_class"][name] = scores.by(np.array(CLASSES)[held_y])
    return result


def offline(args) -> list[tuple[str, bool]]:
    print(f"Offline: {args.per_class} drawings per class of {', '.join(CLASSES)} ({args.per_class * len(CLASSES)}) "
          f"-> training.preprocess -> train_from_scratch -> ONNX; {args.held_out} held-out drawings per seed")
    print(f"  {busy_note()} at the start")
    checks = []
    for seed in args.seeds:
        result = offline_seed(seed, args)
        seconds = result["seconds"]
        total = sum(train + export for train, export, _ in seconds.values())
        cpu = sum(used for _, _, used in seconds.values())
        print(f"\n== seed {seed} ({busy_note()})")
        print(f"  {'':<10}" + "".join(f"{name:>9}" for name in MODEL_NAMES))
        for label in CLASSES:
            print(f"  {label:<10}" + "".join(f"{result['by_class'][name][label]:>9.2%}" for name in MODEL_NAMES))
        print(f"  {'all':<10}" + "".join(f"{result['accuracy'][name]:>9.2%}" for name in MODEL_NAMES))
        print(f"  {'train s':<10}" + "".join(f"{seconds[name][0]:>9.1f}" for name in MODEL_NAMES))
        print(f"  {'export s':<10}" + "".join(f"{seconds[name][1]:>9.1f}" for name in MODEL_NAMES)
              + f"    total {total:.1f} s")
        print(f"  {'CPU s':<10}" + "".join(f"{seconds[name][2]:>9.1f}" for name in MODEL_NAMES)
              + f"    total {cpu:.1f} CPU s (both: training and export)")
        checks += [(f"seed {seed} {name} >= {floor:.0%} of {args.held_out} held out ({result['accuracy'][name]:.2%})",
                    result["accuracy"][name] >= floor) for name, floor in FLOORS.items()]
        checks.append((f"seed {seed}: both networks trained and exported <= {TIME_LIMIT_SECONDS:.0f} s "
                       f"({total:.1f} s)", total <= TIME_LIMIT_SECONDS))
    return checks


# ---- online: through the product's HTTP API --------------------------------------------------

@contextmanager
def celery_worker(env: dict, log_path: Path):
    """A Celery worker as `make run` starts one (one task at a time), until the block ends."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "--pool=solo", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def call(server: Gunicorn, path: str, body: dict | None = None, *, token: str | None = None,
         expect: tuple[int, ...] = (200, 201, 202)) -> dict:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, raw = server.request(path, body=json.dumps(body).encode() if body is not None else None,
                                 headers=headers)
    if status not in expect:
        raise SystemExit(f"{'POST' if body is not None else 'GET'} {path}: {status} {raw[:500]!r}")
    return json.loads(raw) if raw else {}


def contribute(server: Gunicorn, doodles: list[Doodle]) -> list[str]:
    """Each drawing from a visitor of its own (no cookie sent back), as the canvas posts it."""
    return [call(server, "/api/v1/drawings", {"image": d.data_url, "label": d.name, "label_set": SET,
                                              "strokes": d.strokes})["id"] for d in doodles]


def confirm(server: Gunicorn, ids: list[str], token: str) -> None:
    for start in range(0, len(ids), REVIEW_BATCH):
        items = [{"id": drawing_id, "status": "confirmed"} for drawing_id in ids[start:start + REVIEW_BATCH]]
        call(server, "/api/v1/drawings/review", {"items": items}, token=token)


def wait_for_run(server: Gunicorn, token: str, *, known: set[str]) -> dict:
    """The run the confirmations started (or, if none did within 20 s, the one the admin asks for), finished."""
    deadline = time.monotonic() + 20
    run = None
    while run is None and time.monotonic() < deadline:
        runs = call(server, "/api/v1/training-runs", token=token)["items"]
        run = next((r for r in runs if r["id"] not in known and r.get("label_set", SET) == SET), None)
        time.sleep(1)
    if run is None:
        print("  no run started by itself; starting one as the admin", flush=True)
        run = call(server, "/api/v1/training-runs", {"label_set": SET}, token=token)
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while run["status"] not in FINISHED:
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run['id']} not finished after {RUN_TIMEOUT_SECONDS:.0f} s: {run}")
        time.sleep(2)
        run = call(server, f"/api/v1/training-runs/{run['id']}", token=token)
    return run


def predicted_right(answer: dict, doodle: Doodle) -> bool:
    return answer.get("label") in (doodle.label, doodle.name)


def online(args) -> list[tuple[str, bool]]:
    seed = args.seeds[0]
    train, held_out = drawings(seed, args)
    with tempfile.TemporaryDirectory(prefix="inkling-label-sets-") as name:
        tmp = Path(name)
        env = base_env(tmp / "instance", models_path(), 2, FINETUNE_SEED=str(seed))
        flask(env, "db", "upgrade")
        flask(env, "models", "import-base")
        try:
            flask(env, "label-sets", "create", SET, "--classes", ",".join(CLASSES))
        except SystemExit as exc:
            raise SystemExit(f"{exc}\nThis deployment has no label sets yet; --offline measures without them.") from None
        flask(env, "users", "create-admin", "bench", "--password", "a long enough bench password")
        token = flask(env, "users", "issue-token", "bench").strip().splitlines()[-1]
        print(f"Through the HTTP API (gunicorn, 2 workers; a Celery worker; SQLite + local store): set {SET!r}; "
              f"{busy_note()}", flush=True)
        with celery_worker(env, tmp / "worker.log"), Gunicorn(env, tmp / "gunicorn.log") as server:
            known = {run["id"] for run in call(server, "/api/v1/training-runs", token=token)["items"]}
            started = time.perf_counter()
            ids = contribute(server, train)
            print(f"  {len(ids)} drawings contributed in {time.perf_counter() - started:.0f} s", flush=True)
            confirm(server, ids, token)
            run = wait_for_run(server, token, known=known)
            answers = [call(server, "/api/v1/predictions", {"image": d.data_url, "label_set": SET})["predictions"]
                       for d in held_out]
    return online_report(run, answers, held_out)


def online_report(run: dict, answers: list[dict], held_out: list[Doodle]) -> list[tuple[str, bool]]:
    seconds = (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds() \
        if run.get("started") and run.get("finished") else float("nan")
    error = f": {run['error']}" if run.get("error") else ""
    print(f"\nRun {run['id']}: {run['status']} in {seconds:.1f} s (started -> finished){error}")
    print(f"  result: {json.dumps(run.get('result') or {})[:600]}")
    accuracy = {name: float(np.mean([predicted_right(answer[name], d) for answer, d in zip(answers, held_out)]))
                for name in MODEL_NAMES}
    for name in MODEL_NAMES:
        print(f"  {name}: {accuracy[name]:.2%} of {len(held_out)} held-out drawings via /api/v1/predictions")
    checks = [(f"the first run succeeded ({run['status']})", run["status"] == "succeeded"),
              (f"the run took <= {TIME_LIMIT_SECONDS:.0f} s ({seconds:.1f} s)", seconds <= TIME_LIMIT_SECONDS)]
    return checks + [(f"{name} >= {floor:.0%} ({accuracy[name]:.2%})", accuracy[name] >= floor)
                      for name, floor in FLOORS.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", action="store_true", help="the library alone: no web app, no worker")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="offline: one run per seed (default 0 1 2); online: the first only (default 0)")
    parser.add_argument("--per-class", type=int, default=60, help="contributed drawings of each class")
    parser.add_argument("--held-out", type=int, default=300, help="held-out drawings to predict")
    args = parser.parse_args()
    args.seeds = args.seeds or ([0, 1, 2] if args.offline else [0])
    checks = offline(args) if args.offline else online(args)
    return print_floors("Floors (issue #17, cold start)", checks)


if __name__ == "__main__":
    raise SystemExit(main())
