"""Training, publishing and serving: versions, ONNX export fidelity, the TensorFlow-free predictor."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from training.predictor import OnnxModel, Predictor
from training.preprocess import preprocess, to_model_input
from training.versions import MANIFEST_FILE, ONNX_FILE, VersionError, list_versions, load, next_version


def test_published_versions_carry_a_complete_manifest(tiny_models):
    from training.train import CONFIGS

    root, versions = tiny_models
    for name, stored in versions.items():
        manifest = json.loads((stored.path / MANIFEST_FILE).read_text())
        assert manifest["name"] == name and manifest["version"] == 1 and manifest["parent"] is None
        assert manifest["input"]["shape"] == [None, 28, 28, 1]
        assert set(manifest["files"]) == {"model.keras", "model.onnx"}
        assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
        # The first 3,000 MNIST images and procedural drawings in proportion to the full run's.
        synthetic = round(CONFIGS[name].synthetic * 3000 / 50_000)
        assert synthetic > 0 and manifest["training"]["synthetic"] == synthetic
        assert manifest["training"]["samples"] == 3000 + synthetic and manifest["training"]["seed"] == 0
        # Two short epochs on 3,000 images already read most digits; chance would be 10%.
        assert manifest["metrics"]["mnist_test_accuracy"] > 0.6
        assert manifest["onnx_max_abs_difference"] <= 1e-4
        assert list_versions(root, name) == [1] and next_version(root, name) == 2


def test_onnx_answers_as_keras_does(tiny_models, mnist):
    import keras

    _, versions = tiny_models
    batch = to_model_input(mnist.x_test[1000:1500])
    for stored in versions.values():
        keras_model = keras.models.load_model(stored.keras_path)
        expected = keras_model.predict(batch, verbose=0)
        served = OnnxModel.from_stored(stored).probabilities(batch)
        assert np.abs(expected - served).max() <= 1e-4
        np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)


def test_a_model_made_from_bytes_keeps_no_copy_of_them(tiny_models, mnist):
    """The registry hands sessions the bytes it read from the store: they must not outlive the load."""
    _, versions = tiny_models
    batch = to_model_input(mnist.x_test[:50])
    for stored in versions.values():
        data = (stored.path / ONNX_FILE).read_bytes()
        references = sys.getrefcount(data)
        model = OnnxModel(data, name=stored.name, version=stored.version)
        assert sys.getrefcount(data) == references
        np.testing.assert_array_equal(model.probabilities(batch), OnnxModel.from_stored(stored).probabilities(batch))


def test_predictor_answers_both_models_for_one_drawing(tiny_models, mnist):
    root, _ = tiny_models
    predictor = Predictor.from_directory(root)
    drawing = preprocess(_png(mnist.x_test[0]))
    answers = predictor.predict(drawing.pixels)
    assert set(answers) == {"fnn", "cnn"}
    for answer in answers.values():
        assert len(answer.probabilities) == 10 and answer.model_version == 1
        assert answer.label == int(np.argmax(answer.probabilities))
        assert answer.confidence == pytest.approx(max(answer.probabilities), abs=1e-6)
        assert answer.latency_ms >= 0


def test_tiny_models_read_real_digits(tiny_models, mnist):
    root, _ = tiny_models
    predictor = Predictor.from_directory(root)
    labels = [predictor.predict(pixels)["cnn"].label for pixels in mnist.x_test[:200]]
    assert np.mean(np.array(labels) == mnist.y_test[:200]) > 0.6


def _png(pixels):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_corrupt_artifact_is_never_loaded(tiny_models, tmp_path):
    import shutil

    root, versions = tiny_models
    copy = tmp_path / "models"
    shutil.copytree(root, copy)
    onnx = copy / "cnn" / "v1" / ONNX_FILE
    blob = bytearray(onnx.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    onnx.write_bytes(bytes(blob))
    with pytest.raises(VersionError, match="does not match its checksum"):
        Predictor.from_directory(copy)
    (copy / "fnn" / "v1" / ONNX_FILE).unlink()
    with pytest.raises(VersionError, match="missing"):
        load(copy, "fnn", 1)


def test_versions_are_immutable(tiny_models):
    from training.versions import publish

    root, versions = tiny_models
    with pytest.raises(VersionError, match="already exists"):
        publish(root, versions["fnn"].manifest, {})
    assert load(root, "fnn", 1).manifest == versions["fnn"].manifest


def test_missing_versions_are_clear_errors(tmp_path):
    with pytest.raises(VersionError, match="no versions"):
        load(tmp_path, "cnn")
    with pytest.raises(VersionError, match="does not exist"):
        load(tmp_path, "cnn", 7)


def test_training_is_deterministic_given_a_seed(mnist, tmp_path):
    from training.train import CONFIGS, train_base

    config = replace(CONFIGS["cnn"], epochs=1, batch_size=64)
    first = train_base("cnn", root=tmp_path / "a", seed=3, config=config, mnist=mnist, train_limit=640, verbose=0)
    second = train_base("cnn", root=tmp_path / "b", seed=3, config=config, mnist=mnist, train_limit=640, verbose=0)
    batch = to_model_input(mnist.x_test[:100])
    a = OnnxModel.from_stored(first).probabilities(batch)
    b = OnnxModel.from_stored(second).probabilities(batch)
    np.testing.assert_array_equal(a, b)
    assert first.manifest["metrics"] == second.manifest["metrics"]


def test_serving_modules_do_not_import_tensorflow():
    code = ("import sys, training.predictor, training.preprocess, training.versions, training.devset, "
            "training.mnist; bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_train_command_line(tmp_path, mnist):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, **mnist.as_arrays())
    command = [sys.executable, "-m", "training.train", "--out", str(tmp_path / "models"), "--models", "fnn",
               "--epochs", "1", "--train-limit", "512", "--mnist-path", str(npz)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fnn v1: MNIST test accuracy" in result.stdout
    assert "accuracy" in result.stdout + result.stderr  # the per-epoch progress line
    again = subprocess.run(command + ["--if-missing"], capture_output=True, text=True, timeout=300)
    assert "exists; skipping" in again.stdout
    assert list_versions(tmp_path / "models", "fnn") == [1]
