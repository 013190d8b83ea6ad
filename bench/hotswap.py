"""Hot swap under load: versions activated, rolled back, and a corrupt one refused, at 200 predictions a second.

    python -m bench.hotswap [--rate 200] [--phase-seconds 10] [--workers 2]

gunicorn as the Procfile runs it (gunicorn.conf.py, 2 gthread workers; SQLite and a local
store as `make run`; MODEL_REFRESH_SECONDS=2) on a free loopback port, with the base
models as v1, the same files re-imported as v2, and a v3 of the CNN whose ONNX bytes in the
store were altered after registration (one byte flipped: still a loadable ONNX file, but
not the one its checksum names). An open-loop client sends predictions at --rate while,
through the admin API with a bearer token, both networks go to v2, back to v1, then the
CNN to the corrupt v3, then back to v1. Every answer is checked for the version it names.
The one change to gunicorn.conf.py here is keep-alive (on, as gunicorn's default): a
kept-alive connection stays with the worker that accepted it, and /proc says which one, so
the time each worker took to switch is measured from the activation's response.
RATELIMIT_ENABLED=0: one loopback address stands in for many clients here.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import Gunicorn, flask, models_path, print_floors
from bench.load import OpenLoop, base_env, busy_note, drawings, percentile, socket_owners

REFRESH_SECONDS = 2.0


def register_versions(instance: Path, models: Path) -> None:
    """v2 of both networks (the base files again) and a v3 CNN whose stored ONNX fails its checksum."""
    from training.versions import load
    from webapp import create_app
    from webapp.cli import import_version
    from webapp.storage import get_store

    app = create_app({"INSTANCE_PATH": str(instance), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'inkling.sqlite'}",
                      "LOCAL_STORAGE_PATH": str(instance / "objects"), "MODELS_PATH": str(models),
                      "S3_BUCKET": None, "RATELIMIT_ENABLED": False})
    with app.app_context():
        for name in ("fnn", "cnn"):
            import_version(load(models, name), activate=False)
        corrupt = import_version(load(models, "cnn"), activate=False)
        data = bytearray(get_store().get(corrupt.onnx_key))
        # Mid-file lies in the weights: the file still parses, so only the checksum can stop it.
        data[len(data) // 2] ^= 0xFF
        get_store().put(corrupt.onnx_key, bytes(data), content_type="application/octet-stream")
        assert corrupt.version == 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="predictions per second (open loop)")
    parser.add_argument("--phase-seconds", type=float, default=10, help="time between admin actions")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", type=Path, default=models_path())
    args = parser.parse_args()
    models = args.models.resolve()
    payloads = [json.dumps({"image": d.data_url}).encode() for d in drawings()]

    # (at, model, version, what): what the admin does, seconds after the load starts.
    step = args.phase_seconds
    plan = [(step * 0.5, "fnn", 2, "activate v2"), (step * 0.5, "cnn", 2, "activate v2"),
            (step * 1.5, "fnn", 1, "roll back to v1"), (step * 1.5, "cnn", 1, "roll back to v1"),
            (step * 2.5, "cnn", 3, "activate the corrupt v3"), (step * 3.5, "cnn", 1, "roll back to v1")]
    seconds = step * 4

    with tempfile.TemporaryDirectory(prefix="inkling-hotswap-") as name:
        tmp = Path(name)
        instance = tmp / "instance"
        env = base_env(instance, models, args.workers, MODEL_REFRESH_SECONDS=str(REFRESH_SECONDS),
                       GUNICORN_CMD_ARGS="--keep-alive 5 --worker-connections 1000")
        flask(env, "db", "upgrade")
        flask(env, "models", "import-base")
        password = secrets.token_urlsafe(16)
        flask(env, "users", "create-admin", "bench", "--password", password)
        token = flask(env, "users", "issue-token", "bench").strip().splitlines()[-1]
        register_versions(instance, models)
        print(f"Hot swap under load: {args.rate:.0f} predictions/s (open loop, {args.connections} keep-alive "
              f"connections) against gunicorn ({args.workers} gthread workers, SQLite + local store, "
              f"MODEL_REFRESH_SECONDS={REFRESH_SECONDS:g}, RATELIMIT_ENABLED=0); {busy_note()}", flush=True)

        records: list[dict] = []
        owners: dict[int, int] = {}
        with Gunicorn(env, tmp / "gunicorn.log") as server:
            pids = server.workers()
            client = OpenLoop(server.port, payloads, rate=args.rate, seconds=seconds, connections=args.connections,
                              parse=True, on_response=records.append)
            print(f"  connections per worker: {client.open(pids)}", flush=True)
            runner = threading.Thread(target=client.run)
            runner.start()
            actions = act_while_loaded(server, runner, plan, token=token, owners=owners, pids=pids)
            health = worker_health(server, pids)
            same_workers = server.workers() == pids
        load_after = busy_note()

    return report(args, records, actions, owners, pids, client, health, same_workers, load_after)


def act_while_loaded(server, runner: threading.Thread, plan: list[tuple], *, token: str, owners: dict,
                     pids: list[int]) -> list[dict]:
    """Make the admin's activations on schedule while the load runs; note which worker owns each connection."""
    actions = []
    started = time.perf_counter()
    pending = list(plan)
    while runner.is_alive():
        owners.update(socket_owners(server.port, pids))
        while pending and time.perf_counter() - started >= pending[0][0]:
            _, model, version, what = pending.pop(0)
            sent = time.perf_counter()
            status, body = server.request(f"/api/v1/models/{model}/versions/{version}/activate",
                                          body=json.dumps({"reason": f"bench/hotswap.py: {what}"}).encode(),
                                          headers={"Authorization": f"Bearer {token}",
                                                   "Content-Type": "application/json"})
            actions.append({"model": model, "version": version, "what": what, "status": status,
                            "at": time.perf_counter(), "took_ms": (time.perf_counter() - sent) * 1000})
            print(f"  t={time.perf_counter() - started:5.1f} s  {model} {what}: {status}", flush=True)
        runner.join(timeout=0.2)
    return actions


def worker_health(server, pids: list[int]) -> list[dict]:
    """/healthz from every worker."""
    health = {}
    for _ in range(50):  # each new connection goes to whichever worker takes it
        answer = json.loads(server.request("/healthz")[1])
        health[answer["pid"]] = answer
        if len(health) == len(pids):
            break
    return list(health.values())


def report(args, records, actions, owners, pids, client, health, same_workers, load_after) -> int:
    ok = [r for r in records if r["status"] == 200]
    errors = len(records) - len(ok)
    names = {pid: f"worker {index + 1} (pid {pid})" for index, pid in enumerate(pids)}
    by_worker, unplaced = place_answers(ok, owners, pids)

    print(f"\n{len(records)} predictions in {client.elapsed:.1f} s ({len(records) / client.elapsed:.1f}/s): "
          f"statuses {client.statuses}; latency from when due p50 {percentile(client.latencies_ms, 50):.1f} ms, "
          f"p99 {percentile(client.latencies_ms, 99):.1f} ms; answers per worker "
          f"{', '.join(f'{names[p]}: {len(r)}' for p, r in by_worker.items())}"
          + (f"; {unplaced} not placed on a worker" if unplaced else ""))

    # Which versions each network may name at each moment: the one before an action or the one after.
    achieved = len(records) / client.elapsed
    checks = [(f"0 errors ({errors} of {len(records)})", errors == 0 and len(records) > 0),
              (f"the server kept up with {args.rate:.0f} req/s ({achieved:.1f}/s; p99 {percentile(client.latencies_ms, 99):.0f} ms "
               f"from when due)", achieved >= 0.95 * args.rate and percentile(client.latencies_ms, 99) <= 1000)]
    checks.append(("every answer names the old or the new version (1 or 2), never the corrupt 3",
                   only_good_versions(ok)))

    worst = switch_over(actions, by_worker, names, checks)
    if len(actions) != 6:
        checks.append((f"all 6 admin actions made ({len(actions)})", False))
    for pid, rows in by_worker.items():
        if not rows:
            checks.append((f"{names[pid]} answered some predictions", False))
    checks.append((f"every worker picks up a new active version within MODEL_REFRESH_SECONDS + 1 s "
                   f"(worst {worst:.2f} s)", worst <= REFRESH_SECONDS + 1))
    warnings = {h["pid"]: h["checks"]["models"].get("warning") or h["checks"]["models"].get("error") for h in health}
    print(f"\n/healthz afterwards, models: { {pid: (w or 'ok') for pid, w in warnings.items()} }")
    checks.append(("after the rollback from the corrupt v3, /healthz reports no model problem on any worker",
                   len(warnings) == len(pids) and not any(warnings.values())))
    checks.append(("no worker restarted during the run", same_workers))
    return print_floors(f"Floors (issue #7, hot swap under load); finished at {load_after}", checks)


def place_answers(ok: list[dict], owners: dict, pids: list[int]) -> tuple[dict[int, list[dict]], int]:
    """The answers each worker gave (by the connection's owner), in order; and how many could not be placed."""
    by_worker: dict[int, list[dict]] = {pid: [] for pid in pids}
    unplaced = 0
    for record in ok:
        pid = owners.get(record["local_port"])
        if pid in by_worker:
            by_worker[pid].append(record)
        else:
            unplaced += 1
    for rows in by_worker.values():
        rows.sort(key=lambda r: r["done"])
    return by_worker, unplaced


def only_good_versions(ok: list[dict]) -> bool:
    """Print how many answers named each version; True if none named one but 1 or 2."""
    allowed_ok, named = True, {"fnn": {}, "cnn": {}}
    for record in ok:
        for model in ("fnn", "cnn"):
            version = record["body"]["predictions"][model]["model_version"]
            named[model][version] = named[model].get(version, 0) + 1
    for model in ("fnn", "cnn"):
        stray = {v: n for v, n in named[model].items() if v not in (1, 2)}
        allowed_ok &= not stray
        print(f"  {model}: answers naming each version {dict(sorted(named[model].items()))}")
    return allowed_ok


def switch_over(actions: list[dict], by_worker: dict, names: dict, checks: list) -> float:
    """Print how long each worker took to serve each newly active version; the worst, in seconds."""
    print(f"\nSwitch-over: from the activation's response to each worker's first answer naming the new version "
          f"(refresh every {REFRESH_SECONDS:g} s); 'late old' = answers naming the old version due after that")
    current = {"fnn": 1, "cnn": 1}
    worst = 0.0
    for index, action in enumerate(actions):
        model, version = action["model"], action["version"]
        later = [a["at"] for a in actions[index + 1:] if a["model"] == model]
        until = later[0] if later else float("inf")
        old = current[model]
        line = f"  {model} v{old} -> v{version} ({action['what']}, API {action['status']} in {action['took_ms']:.0f} ms):"
        # The API refuses a version whose artifact fails its checksum (409) before any worker sees it.
        expected = 409 if version == 3 else 200
        if action["status"] != expected:
            checks.append((f"{model} {action['what']}: API answered {action['status']}, not {expected}", False))
        if version == old:
            print(line + " nothing to switch: the corrupt version was never loaded")
            continue
        if version == 3:
            window = [r for rows in by_worker.values() for r in rows if action["at"] <= r["done"] < until]
            kept = sum(1 for r in window if r["body"]["predictions"][model]["model_version"] == old)
            line += f" {kept} of {len(window)} answers until the next action name v{old}"
            checks.append((f"corrupt {model} v3 refused ({action['status']}) and never loaded: all {len(window)} "
                           f"answers after the attempt name v{old}", kept == len(window) and len(window) > 0))
            print(line)
            continue  # not loaded: the workers keep serving the previous version
        for pid, rows in by_worker.items():
            window = [r for r in rows if action["at"] <= r["done"] < until]
            first = next((r for r in window if r["body"]["predictions"][model]["model_version"] == version), None)
            if first is None:
                line += f"\n    {names[pid]}: never switched ({len(window)} answers)"
                checks.append((f"{names[pid]} switched {model} to v{version}", False))
                continue
            took = first["done"] - action["at"]
            late = sum(1 for r in window if r["due"] > first["done"]
                       and r["body"]["predictions"][model]["model_version"] != version)
            worst = max(worst, took)
            line += f"\n    {names[pid]}: {took:5.2f} s  ({late} late old)"
            if late:
                checks.append((f"{names[pid]}: {model} v{version} stays once switched ({late} late old answers)", False))
        current[model] = version
        print(line)
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
