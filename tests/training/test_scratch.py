"""Training from scratch for a new label set: any number of classes, exported and served like digits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.doodles import doodle_batch
from training.preprocess import preprocess, to_model_input


@pytest.fixture(scope="module")
def doodles():
    """Preprocessed doodles as a set's confirmed drawings are stored: 6 classes, 60 to train, 60 held out."""
    def pixels(batch):
        return (np.stack([preprocess(d.data_url).pixels for d in batch]),
                np.array([d.label for d in batch], np.int64))

    return pixels(doodle_batch(60, seed=0)), pixels(doodle_batch(60, seed=1))


@pytest.fixture
def short_runs(monkeypatch):
    from training import scratch

    monkeypatch.setattr(scratch, "SCRATCH_CONFIGS",
                        {name: replace(config, epochs=3) for name, config in scratch.SCRATCH_CONFIGS.items()})


@pytest.mark.parametrize("name", ["fnn", "cnn"])
def test_a_model_with_the_sets_outputs_whose_export_answers_like_keras(name, doodles, short_runs, tmp_path):
    from training.export import save_version
    from training.predictor import OnnxModel
    from training.scratch import train_from_scratch

    (x, y), (held_x, held_y) = doodles
    model = train_from_scratch(name, x, y, num_classes=6, seed=0)
    assert model.output_shape == (None, 6)
    stored = save_version(model, root=tmp_path, name=name, version=1, parent=None, metrics={},
                          training={"kind": "scratch"}, check_sample=to_model_input(held_x))
    assert stored.manifest["output"]["shape"] == [None, 6]
    served = OnnxModel.from_stored(stored)
    assert served.num_classes == 6
    expected = model.predict(to_model_input(held_x), verbose=0)
    answered = served.probabilities(to_model_input(held_x))
    assert answered.shape == (60, 6) and np.abs(expected - answered).max() <= 1e-4
    answer = served.predict(held_x[0])
    assert len(answer.probabilities) == 6 and answer.label == int(np.argmax(expected[0]))
    # Three short epochs on 60 drawings already beat chance (1 in 6) by far.
    assert np.mean(answered.argmax(axis=1) == held_y) > 0.4
    with pytest.raises(ValueError, match="output shape"):
        OnnxModel.from_stored(stored, num_classes=10)


def test_same_seed_same_weights(doodles, short_runs):
    from training.scratch import train_from_scratch

    (x, y), _ = doodles
    first = train_from_scratch("cnn", x[:24], y[:24] % 3, num_classes=3, seed=4)
    again = train_from_scratch("cnn", x[:24], y[:24] % 3, num_classes=3, seed=4)
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (x, y, 1), "num_classes"),
    (lambda x, y: (x.astype(np.float32), y, 6), "uint8"),
    (lambda x, y: (x[:, :20], y, 6), "28, 28"),
    (lambda x, y: (x, y[:-1], 6), "one per drawing"),
    (lambda x, y: (x, y + 1, 6), r"\[0, 6\)"),
    (lambda x, y: (x, np.where(y == 2, 0, y), 6), r"class\(es\) \[2\]"),
    (lambda x, y: (x[:0], y[:0], 6), "there must be drawings"),
])
def test_bad_input_is_refused_before_any_training(doodles, change, message):
    from training.scratch import train_from_scratch

    (x, y), _ = doodles
    bad_x, bad_y, classes = change(x, y)
    with pytest.raises(ValueError, match=message):
        train_from_scratch("cnn", bad_x, bad_y, num_classes=classes)
    with pytest.raises(ValueError, match="unknown network"):
        train_from_scratch("rnn", x, y, num_classes=6)


def test_networks_take_any_number_of_classes_but_one():
    from training.networks import build

    assert build("fnn", num_classes=3).output_shape == (None, 3)
    assert build("cnn").output_shape == (None, 10)
    with pytest.raises(ValueError, match="num_classes"):
        build("cnn", num_classes=1)
