"""A label set's networks: any number of classes, trained from scratch, judged against chance."""

from __future__ import annotations

import numpy as np
import pytest

from training.gate import above_chance, chance_tail


def test_chance_tail_is_the_binomial_tail():
    assert chance_tail(0, 10, 0.25) == 1.0 and chance_tail(11, 10, 0.25) == 0.0
    assert chance_tail(10, 10, 0.5) == pytest.approx(1 / 1024)
    assert chance_tail(1, 3, 1 / 3) == pytest.approx(1 - (2 / 3) ** 3)
    assert 0 < chance_tail(900, 3000, 1 / 6) < 1e-20  # thousands of trials, no overflow


def test_a_first_version_must_beat_chance_significantly():
    labels = np.repeat(np.arange(6), 10)
    guessing = (labels + np.arange(60)) % 6  # right one time in six, as a guess would be
    assert not above_chance(labels, guessing, num_classes=6).promote
    good = labels.copy()
    good[::5] = (good[::5] + 1) % 6  # 80 % right
    decision = above_chance(labels, good, num_classes=6)
    assert decision.promote and decision.checks["holdout"]["right"] == 48
    assert "chance 16.67%" in decision.reason
    assert not above_chance(labels[:0], good[:0], num_classes=6).promote  # nothing to judge on


@pytest.mark.parametrize("name", ["fnn", "cnn"])
def test_networks_take_any_number_of_classes_and_train_from_scratch(name):
    from training.networks import build
    from training.scratch import train_from_scratch

    assert build(name).output_shape == (None, 10)  # digits' default
    assert build(name, num_classes=3).output_shape == (None, 3)
    rng = np.random.default_rng(0)
    x = np.zeros((60, 28, 28), np.uint8)
    y = np.arange(60) % 3
    for index, label in enumerate(y):  # a bar whose place tells the class apart
        x[index, 4 + 8 * label + rng.integers(0, 3): 9 + 8 * label, 4:24] = 255
    model = train_from_scratch(name, x, y.astype(np.int64), num_classes=3, seed=0)
    assert model.output_shape == (None, 3)
    predicted = np.argmax(model.predict(x[..., None].astype("float32") / 255, verbose=0), axis=1)
    assert np.mean(predicted == y) > 0.9
