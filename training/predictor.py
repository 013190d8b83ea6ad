"""Serving without TensorFlow: both networks answered by ONNX Runtime, one image at a time.

A session is created once per model version and reused; a process holding both stays
small (~80 MB) and answers both models in well under a millisecond.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training import MODEL_NAMES
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
                 num_classes: int | None = None):
        options = ort.SessionOptions()
        # One image per call: threads would cost more in hand-offs than they save, and
        # gunicorn runs several processes side by side anyway.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = _session(model, options)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.name = name
        self.version = version
        self.num_classes = _output_classes(self.session, name=name, version=version, expected=num_classes)

    @classmethod
    def from_stored(cls, stored: StoredVersion, **kwargs) -> "OnnxModel":
        return cls(stored.path / ONNX_FILE, name=stored.name, version=stored.version, **kwargs)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(N, 28, 28, 1) float32 in [0, 1] -> (N, num_classes) probabilities."""
        return self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def predict(self, pixels: np.ndarray) -> NetworkAnswer:
        """One preprocessed drawing, (28, 28) uint8, as stored and as serving sees it."""
        return self.answer(to_model_input(pixels))

    def answer(self, model_input: np.ndarray) -> NetworkAnswer:
        """The answer for one drawing already in the networks' input form (:func:`to_model_input`)."""
        start = time.perf_counter()
        probabilities = self.probabilities(model_input)[0]
        elapsed = (time.perf_counter() - start) * 1000
        label = int(np.argmax(probabilities))
        # Six decimals is plenty for people and keeps JSON and database rows small.
        rounded = [round(p, 6) for p in probabilities.tolist()]
        return NetworkAnswer(label=label, confidence=rounded[label], probabilities=rounded,
                          model_version=self.version, latency_ms=round(elapsed, 3))


def _session(model: bytes | str | Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session; one given bytes is loaded from a private copy of them on disk.

    ONNX Runtime's Python session keeps the bytes it was made from for as long as it lives (to
    make itself again should a provider fail): a second copy of every weight beside the loaded
    ones, in each web worker. Made from a file, it keeps only the path.
    """
    if not isinstance(model, bytes):
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory(prefix="inkling-onnx-") as folder:
        path = Path(folder) / ONNX_FILE
        path.write_bytes(model)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _output_classes(session: ort.InferenceSession, *, name: str, version: int, expected: int | None) -> int:
    """The number of classes the graph answers: (N, K) with K >= 2 (and K == ``expected`` when given)."""
    shape = session.get_outputs()[0].shape
    classes = shape[-1] if len(shape) == 2 else None
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2 \
            or expected is not None and classes != expected:
        wanted = f"(N, {expected})" if expected is not None else "(N, classes)"
        raise ValueError(f"{name} v{version}: output shape {shape} is not {wanted}")
    return classes


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
        model_input = to_model_input(pixels)
        return {name: model.answer(model_input) for name, model in self.models.items()}
