"""Dataset import: 100,000 Quick, Draw!-style numpy bitmaps into SQLite and the local object store.

    python -m bench.importing [--rows 100000] [--profile]

Makes a synthetic cat.npy ((N, 784) uint8 doodles: jittered rings and strokes, white on black,
mostly empty as Quick, Draw!'s are), a throwaway deployment (SQLite, local objects), and
imports the file in this process as `flask dataset import --format quickdraw-npy` does,
sampling this process's VmRSS every 10 ms. Prints the rate, the memory growth and the floors
from issue #17; then imports it again (every drawing a duplicate).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import RssSampler, memory_mb, print_floors

RATE_FLOOR = 2000  # drawings/s
GROWTH_LIMIT_MB = 100.0
BLOCK = 10_000


def doodles(rows: int, seed: int = 0) -> np.ndarray:
    """(rows, 784) uint8: a ring and a straight stroke each, jittered, antialiased-ish, white on black."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[0:28, 0:28].reshape(2, 1, 784).astype(np.float32)
    out = np.empty((rows, 784), np.uint8)
    for start in range(0, rows, BLOCK):
        n = min(BLOCK, rows - start)
        centre = rng.uniform(9, 19, (2, n, 1)).astype(np.float32)
        radius = rng.uniform(4, 9, (n, 1)).astype(np.float32)
        ring = np.abs(np.hypot(grid[0] - centre[0], grid[1] - centre[1]) - radius)
        angle = rng.uniform(0, np.pi, (n, 1)).astype(np.float32)
        line = np.abs((grid[0] - 14) * np.cos(angle) - (grid[1] - 14) * np.sin(angle))
        ink = np.clip(2.0 - np.minimum(ring, line + (rng.random((n, 1)) < 0.5) * 99), 0, 1)
        out[start:start + n] = (ink * 255).astype(np.uint8)
    return out


def make_app(tmp: Path):
    from flask_migrate import upgrade

    from webapp import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/inkling.sqlite", "INSTANCE_PATH": str(tmp),
                      "LOCAL_STORAGE_PATH": str(tmp / "objects"), "MIGRATIONS": True, "RETRAIN_EVERY": 0})
    with app.app_context():
        upgrade()
    return app


def timed_import(app, path: Path) -> dict:
    from webapp.importing import import_dataset

    with app.app_context():
        before = memory_mb()["VmRSS"]
        sampler = RssSampler(os.getpid())
        sampler.start()
        started, cpu = time.perf_counter(), time.process_time()
        result = import_dataset(path=path, fmt="quickdraw-npy", label_set="digits", label="3")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = sampler.stop()
    return {"result": result, "seconds": seconds, "rate": result.read / seconds, "growth": peak - before,
            "before": before, "peak": peak, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="print where the first import spends its time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inkling-bench-import-") as folder:
        tmp = Path(folder)
        path = tmp / "cat.npy"
        np.save(path, doodles(args.rows))
        print(f"{args.rows:,} synthetic bitmaps, {path.stat().st_size:,} bytes -> {path.name}")
        app = make_app(tmp)
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            first = profiler.runcall(timed_import, app, path)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            first = timed_import(app, path)
        again = timed_import(app, path)
    for title, run in (("first import", first), ("again (all duplicates)", again)):
        result = run["result"]
        print(f"{title}: {result.imported:,} imported, {result.duplicates:,} duplicates in {run['seconds']:.1f} s "
              f"= {run['rate']:,.0f} drawings/s ({run['cpu']:.1f} CPU s, {run['cpu'] * 1e6 / result.read:.0f} us a drawing, "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); VmRSS {run['before']:.0f} -> peak {run['peak']:.0f} MB "
              f"(+{run['growth']:.1f} MB)")
    return print_floors("Floors (issue #17)", [
        (f">= {RATE_FLOOR:,} drawings/s imported ({first['rate']:,.0f})", first["rate"] >= RATE_FLOOR),
        (f"the process grows < {GROWTH_LIMIT_MB:.0f} MB ({first['growth']:.1f} MB)",
         first["growth"] < GROWTH_LIMIT_MB),
        ("all imported, then all duplicates", first["result"].imported == args.rows == again["result"].duplicates),
    ])


if __name__ == "__main__":
    raise SystemExit(main())
