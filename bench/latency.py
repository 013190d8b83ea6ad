"""Latency and memory of serving: preprocessing, ONNX Runtime, and Keras predict() as the baseline.

    python -m bench.latency [--models instance/models] [--requests 2000]

Each side runs in a fresh child process, so its resident memory is its own: the ONNX side
imports no TensorFlow, as a web process would not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import ROOT, memory_mb, models_path, print_floors


def rss_mb() -> tuple[float, float]:
    """Current and peak resident set size of this process, in MB."""
    memory = memory_mb("self")
    return memory["VmRSS"], memory["VmHWM"]


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    import numpy as np

    return {"p50": float(np.percentile(samples_ms, 50)), "p99": float(np.percentile(samples_ms, 99)),
            "mean": float(np.mean(samples_ms))}


def drawings(count: int) -> list[str]:
    from training.devset import VARIANTS, generate
    from training.mnist import load_mnist

    mnist = load_mnist()
    per_variant = max(1, count // len(VARIANTS))
    return [d.data_url for d in generate(mnist.x_test, mnist.y_test, per_variant=per_variant, seed=7)]


def child_onnx(models: Path, requests: int) -> dict:
    from training.predictor import Predictor
    from training.preprocess import preprocess

    payloads = drawings(requests)
    predictor = Predictor.from_directory(models)
    preprocess_ms, inference = [], {name: [] for name in predictor.models}
    both_ms = []
    for payload in payloads:
        start = time.perf_counter()
        pixels = preprocess(payload).pixels
        preprocess_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        answers = predictor.predict(pixels)
        both_ms.append((time.perf_counter() - start) * 1000)
        for name, answer in answers.items():
            inference[name].append(answer.latency_ms)
    rss, peak = rss_mb()
    return {"preprocess_ms": percentiles(preprocess_ms), "both_ms": percentiles(both_ms),
            "model_ms": {name: percentiles(v) for name, v in inference.items()},
            "rss_mb": rss, "peak_rss_mb": peak, "tensorflow_loaded": "tensorflow" in sys.modules,
            "requests": len(payloads)}


def child_keras(models: Path, requests: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training.mnist import load_mnist
    from training.preprocess import to_model_input
    from training.versions import load

    mnist = load_mnist()
    loaded = {name: keras.models.load_model(load(models, name).keras_path) for name in ("fnn", "cnn")}
    images = to_model_input(mnist.x_test[:requests])
    result = {}
    for name, model in loaded.items():
        model.predict(images[:1], verbose=0)
        predict_ms, call_ms = [], []
        for image in images:
            batch = image[None]
            start = time.perf_counter()
            model.predict(batch, verbose=0)
            predict_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            model(batch, training=False)
            call_ms.append((time.perf_counter() - start) * 1000)
        result[name] = {"predict_ms": percentiles(predict_ms), "call_ms": percentiles(call_ms)}
    rss, peak = rss_mb()
    return {"model_ms": result, "rss_mb": rss, "peak_rss_mb": peak, "requests": len(images)}


def run_child(kind: str, models: Path, requests: int) -> dict:
    command = [sys.executable, "-m", "bench.latency", "--child", kind, "--models", str(models), "--requests", str(requests)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--keras-requests", type=int, default=200)
    parser.add_argument("--child", choices=["onnx", "keras"], default=None)
    args = parser.parse_args()
    from training.versions import list_versions

    models = args.models or models_path()
    if args.child == "onnx":
        print(json.dumps(child_onnx(models, args.requests)))
        return 0
    if args.child == "keras":
        print(json.dumps(child_keras(models, args.requests)))
        return 0
    if not all(list_versions(models, name) for name in ("fnn", "cnn")):
        print(f"no models under {models}; run `make models` first", file=sys.stderr)
        return 1

    onnx = run_child("onnx", models, args.requests)
    keras_side = run_child("keras", models, args.keras_requests)
    print(f"ONNX Runtime serving ({onnx['requests']} canvas-like drawings, one at a time)")
    print(f"  preprocessing      p50 {onnx['preprocess_ms']['p50']:6.3f} ms   p99 {onnx['preprocess_ms']['p99']:6.3f} ms")
    for name, figures in onnx["model_ms"].items():
        print(f"  {name} inference      p50 {figures['p50']:6.3f} ms   p99 {figures['p99']:6.3f} ms")
    print(f"  both models        p50 {onnx['both_ms']['p50']:6.3f} ms   p99 {onnx['both_ms']['p99']:6.3f} ms")
    print(f"  process RSS {onnx['rss_mb']:.0f} MB (peak {onnx['peak_rss_mb']:.0f} MB); "
          f"TensorFlow loaded: {onnx['tensorflow_loaded']}")
    print(f"\nKeras baseline ({keras_side['requests']} MNIST digits, one at a time)")
    for name, figures in keras_side["model_ms"].items():
        print(f"  {name} predict()      p50 {figures['predict_ms']['p50']:6.2f} ms   p99 {figures['predict_ms']['p99']:6.2f} ms"
              f"   (model(x) p50 {figures['call_ms']['p50']:.2f} ms)")
    print(f"  process RSS {keras_side['rss_mb']:.0f} MB (peak {keras_side['peak_rss_mb']:.0f} MB)")
    keras_both = sum(f["predict_ms"]["p50"] for f in keras_side["model_ms"].values())
    print(f"\nONNX vs Keras predict(), both models p50: {onnx['both_ms']['p50']:.3f} ms vs {keras_both:.1f} ms "
          f"({keras_both / onnx['both_ms']['p50']:.0f}x faster); RSS {onnx['rss_mb']:.0f} vs {keras_side['rss_mb']:.0f} MB")
    checks = [
        ("both models p50 <= 1 ms", onnx["both_ms"]["p50"] <= 1.0),
        ("preprocessing p50 <= 3 ms", onnx["preprocess_ms"]["p50"] <= 3.0),
        ("serving process RSS <= 150 MB", onnx["rss_mb"] <= 150),
        ("no TensorFlow in the serving process", not onnx["tensorflow_loaded"]),
    ]
    return print_floors("Floors (issue #2)", checks)


if __name__ == "__main__":
    raise SystemExit(main())
