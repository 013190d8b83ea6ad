"""Turn a trained Keras network into a published model version: .keras, ONNX and manifest."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import keras
import numpy as np

from training import IMAGE_SIZE
from training.predictor import OnnxModel
from training.versions import KERAS_FILE, ONNX_FILE, StoredVersion, new_manifest, publish

# ONNX must answer as Keras does; anything looser means the export is broken.
EXPORT_TOLERANCE = 1e-4

INPUT_SPEC = {
    "shape": [None, IMAGE_SIZE, IMAGE_SIZE, 1],
    "dtype": "float32",
    "range": [0.0, 1.0],
    "layout": "NHWC",
    "meaning": "training.preprocess output: white digit on black, 20 px box, centre of mass at (14, 14)",
}


def output_spec(num_classes: int) -> dict:
    """The manifest's output: one probability per class (digits 0-9, or a label set's classes in order)."""
    return {"shape": [None, num_classes], "dtype": "float32",
            "meaning": f"probabilities of the {num_classes} classes, in the label set's order"}


def export_onnx(model: keras.Model, path: Path) -> None:
    # Keras prints "Saved artifact at ..." on stdout; keep the CLI's output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        model.export(str(path), format="onnx", verbose=False)


def onnx_max_difference(model: keras.Model, onnx_path: Path, sample: np.ndarray) -> float:
    expected = model.predict(sample, verbose=0, batch_size=len(sample))
    served = OnnxModel(onnx_path, name=model.name, version=0, num_classes=None).probabilities(sample)
    return float(np.abs(expected - served).max())


def save_version(
    model: keras.Model, *, root: Path, name: str, version: int, parent: int | None,
    metrics: dict, training: dict, check_sample: np.ndarray,
) -> StoredVersion:
    """Save, export, check the export against Keras on ``check_sample``, and publish."""
    with tempfile.TemporaryDirectory(prefix="inkling-export-") as tmp:
        keras_path, onnx_path = Path(tmp) / KERAS_FILE, Path(tmp) / ONNX_FILE
        model.save(keras_path)
        export_onnx(model, onnx_path)
        difference = onnx_max_difference(model, onnx_path, check_sample)
        if difference > EXPORT_TOLERANCE:
            raise RuntimeError(f"{name}: ONNX differs from Keras by {difference:.2e} (> {EXPORT_TOLERANCE})")
        manifest = new_manifest(
            name=name, version=version, parent=parent, metrics=metrics,
            input_spec=INPUT_SPEC, output_spec=output_spec(int(model.output_shape[-1])), training=training,
            extra={"onnx_max_abs_difference": difference, "keras_version": keras.__version__},
        )
        return publish(root, manifest, {KERAS_FILE: keras_path, ONNX_FILE: onnx_path})
