"""Serving without TensorFlow: both networks answered by ONNX Runtime, one image at a time.

A session is created once per model version and reused; a process holding both stays
small (~80 MB) and answers both models in well under a millisecond.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training import MODEL_NAMES, NUM_CLASSES
from training.preprocess import to_model_input
from training.versions import ONNX_FILE, StoredVersion, load


@dataclass(frozen=True)
class NetworkAnswer:
    """One network's answer for one drawing (the ORM row that stores it is webapp.models.Prediction)."""

    label: int
    confidence: float
    probabilities: list[float]
    model_version: int
    latency_ms: float

    def as_dict(self) -> dict:
        return {"label": self.label, "confidence": self.confidence,
                "probabilities": self.probabilities, "model_version": self.model_version,
                "latency_ms": self.latency_ms}


class OnnxModel:
    """One exported network: an ONNX Runtime session and the version it came from."""

    def __init__(self, model: bytes | str | Path, *, name: str, version: int, threads: int = 1,
                 num_classes: int | None = NUM_CLASSES):
        options = ort.SessionOptions()
        # One image per call: threads would cost more in hand-offs than they save, and
        # gunicorn runs several processes side by side anyway.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = name
        self.version = version
        outputs = self.session.get_outputs()
        classes = outputs[0].shape[-1]
        # num_classes=None takes any number of classes (a label set's own networks).
        if not isinstance(classes, (int, type(None))) or (num_classes is not None and classes not in (num_classes, None)):
            raise ValueError(f"{name} v{version}: output shape {outputs[0].shape} is not (N, {num_classes})")

    @classmethod
    def from_stored(cls, stored: StoredVersion, **kwargs) -> "OnnxModel":
        return cls(stored.path / ONNX_FILE, name=stored.name, version=stored.version, **kwargs)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, 28, 28, 1) float32 in [0, 1] -> (N, classes) probabilities."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def predict(self, pixels: np.ndarray) -> NetworkAnswer:
        """One preprocessed drawing, (28, 28) uint8, as stored and as serving sees it."""
        start = time.perf_counter()
        probabilities = self.probabilities(to_model_input(pixels))[0]
        elapsed = (time.perf_counter() - start) * 1000
        label = int(np.argmax(probabilities))
        # Six decimals is plenty for people and keeps JSON and database rows small.
        rounded = [round(float(p), 6) for p in probabilities]
        return NetworkAnswer(label=label, confidence=rounded[label], probabilities=rounded,
                          model_version=self.version, latency_ms=round(elapsed, 3))


class Predictor:
    """Both networks side by side: ``predict(pixels)`` -> ``{"fnn": NetworkAnswer, "cnn": NetworkAnswer}``."""

    def __init__(self, models: dict[str, OnnxModel]):
        self.models = dict(models)

    @classmethod
    def from_directory(cls, root: str | Path, names: tuple[str, ...] = MODEL_NAMES,
                       versions: dict[str, int] | None = None) -> "Predictor":
        """Load the given (or latest) version of each model, refusing any that fails its checksum."""
        versions = versions or {}
        models = {}
        for name in names:
            stored = load(Path(root), name, versions.get(name))
            models[name] = OnnxModel.from_stored(stored)
        return cls(models)

    def predict(self, pixels: np.ndarray) -> dict[str, NetworkAnswer]:
        return {name: model.predict(pixels) for name, model in self.models.items()}
