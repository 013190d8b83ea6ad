"""What storing strokes costs a contribution: server time per POST /api/v1/drawings with and without them.

    python -m bench.strokes [--requests 400] [--rounds 3]

Starts gunicorn (one worker, one thread, so requests are timed one at a time) on a throwaway
database and local object store with the base models from instance/models, and sends the same
canvas-like drawings (10 strokes, ~300 points, drawn as the pad draws them) alternately with and
without their strokes. Prints the app's own time (its Server-Timing header) for each, and the
difference against the floor (<= 0.5 ms).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import math
import random
import tempfile

import numpy as np

from bench.harness import Gunicorn, bench_env, flask, models_path, print_floors

CANVAS = 280
FLOOR_MS = 0.5


def typical_strokes(seed: int, *, size: int = CANVAS, strokes: int = 10, points: int = 300) -> list[dict]:
    """A doodle as the canvas sends it: ``strokes`` jittered arcs, ``points`` points in all, x and y in
    whole pixels of a ``size`` px canvas, t in ms since the first point (a point every ~8-16 ms, a pause
    between strokes)."""
    rng = random.Random(seed)
    drawing, now = [], 0
    for index in range(strokes):
        count = points // strokes + (1 if index < points % strokes else 0)
        cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size
        radius, start = rng.uniform(0.1, 0.3) * size, rng.uniform(0, 2 * math.pi)
        stroke = {"x": [], "y": [], "t": []}
        for step in range(count):
            angle = start + 2.5 * step / count
            stroke["x"].append(round(min(max(cx + radius * math.cos(angle) + rng.uniform(-2, 2), 0), size)))
            stroke["y"].append(round(min(max(cy + radius * math.sin(angle) + rng.uniform(-2, 2), 0), size)))
            stroke["t"].append(now)
            now += rng.randint(8, 16)
        drawing.append(stroke)
        now += rng.randint(150, 400)
    return drawing


def image_of(strokes: list[dict], size: int = CANVAS) -> str:
    """The strokes drawn black on white as the pad draws them, as a PNG data URL."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        pen.line(list(zip(stroke["x"], stroke["y"])), fill="black", width=size // 14, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def server_ms(connection: http.client.HTTPConnection, body: bytes) -> float:
    """POST one contribution; the app's own time for it (Server-Timing), in ms."""
    connection.request("POST", "/api/v1/drawings", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 201:
        raise SystemExit(f"contribution refused: HTTP {response.status}")
    return float(response.getheader("Server-Timing", "").split("dur=")[1])


def measure(port: int, requests: int, rounds: int) -> dict[str, list[float]]:
    """Server times with and without strokes, in pairs: each drawing is sent with its strokes and
    without them one just after the other (which goes first alternates), so that the two of a pair
    meet the same moment of a shared machine's load and do the same work but for the strokes (the
    same image, label and reading, so the same confirmation policy)."""
    payloads = []
    for seed in range(20):
        strokes = typical_strokes(seed)
        payloads.append({"image": image_of(strokes), "label": seed % 10, "strokes": strokes})
    times: dict[str, list[float]] = {"with": [], "without": []}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(rounds):
            for pair in range(requests // 2):
                payload = payloads[pair % len(payloads)]
                order = ("with", "without") if pair % 2 == 0 else ("without", "with")
                for kind in order:
                    body = payload if kind == "with" else {key: value for key, value in payload.items()
                                                           if key != "strokes"}
                    times[kind].append(server_ms(connection, json.dumps(body).encode()))
    finally:
        connection.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="contributions per round, half of them with strokes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="inkling-bench-") as tmp:
        env = bench_env(tmp, MODELS_PATH=str(models_path()), WEB_CONCURRENCY="1")
        flask(env, "db", "upgrade")
        flask(env, "models", "import-base")
        with Gunicorn(env, args=["--workers", "1", "--threads", "1"], workers=1) as server:
            times = measure(server.port, args.requests, args.rounds)
    points = sum(len(stroke["t"]) for stroke in typical_strokes(0))
    print(f"{args.rounds} x {args.requests} contributions, one at a time; strokes: 10 strokes, {points} points")
    medians = {}
    for kind, values in times.items():
        medians[kind] = float(np.median(values))
        print(f"  {kind:>7} strokes  server time p50 {medians[kind]:6.2f} ms   mean {np.mean(values):6.2f} ms   "
              f"p90 {np.percentile(values, 90):6.2f} ms   ({len(values)} requests)")
    # Each drawing with strokes against the same drawing without them, sent next to it.
    paired = float(np.median(np.subtract(times["with"], times["without"])))
    print(f"  strokes add {medians['with'] - medians['without']:+.2f} ms (difference of the p50s), "
          f"{paired:+.2f} ms (p50 of the differences within pairs: one drawing with and without)")
    return print_floors("Floors", [(f"storing strokes adds <= {FLOOR_MS} ms server time (p50 of the differences)",
                                    paired <= FLOOR_MS)])


if __name__ == "__main__":
    raise SystemExit(main())
