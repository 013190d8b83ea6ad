"""Fine-tuning: what one run trains on, batch-norm recalibration, and the defaults training runs use."""

from __future__ import annotations

import numpy as np

from training.finetune import FineTuneConfig, Samples, training_mix


def _samples(count: int, label: int) -> Samples:
    return Samples(np.full((count, 28, 28), label, np.uint8), np.full((count,), label, np.uint8))


def test_the_mix_repeats_new_drawings_caps_replay_and_adds_mnist(mnist):
    config = FineTuneConfig(epochs=1, new_repeats=2, replay_limit=50, mnist_ratio=3.0, mnist_minimum=100)
    new, replay = _samples(40, 7), _samples(80, 3)
    mix = training_mix(new=new, replay=replay, mnist=mnist, config=config, rng=np.random.default_rng(0))
    # 80 new (40 twice) + 50 replayed (capped) = 130 user drawings, then 3x as many from MNIST.
    assert len(mix) == 80 + 50 + 390
    assert np.all(mix.y[:80] == 7) and np.all(mix.x[:80] == 7)
    assert np.all(mix.y[80:130] == 3)
    mnist_part = mix.x[130:]
    assert mnist_part.shape == (390, 28, 28) and mnist_part.dtype == np.uint8
    # Distinct MNIST training images, not one image repeated.
    assert len({image.tobytes() for image in mnist_part}) == 390


def test_a_small_batch_still_gets_the_mnist_minimum(mnist):
    config = FineTuneConfig(epochs=1, mnist_minimum=3000)
    mix = training_mix(new=_samples(10, 1), replay=Samples.empty(), mnist=mnist,
                       config=config, rng=np.random.default_rng(0))
    assert len(mix) == 10 * config.new_repeats + config.mnist_minimum


def test_boundary_replay_brings_the_nearest_images_of_other_digits():
    from training.finetune import nearest_other_digits

    rng = np.random.default_rng(0)
    pool_x = rng.integers(0, 256, size=(500, 28, 28), dtype=np.uint8)
    pool_y = rng.integers(0, 10, size=500).astype(np.uint8)
    new = Samples(rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=7).astype(np.uint8))
    found = nearest_other_digits(new, pool_x, pool_y, k=4, chunk=64)
    # Brute force, in float64: each drawing's four nearest among the images of other digits.
    expected = set()
    for image, label in zip(new.x.astype(np.float64), new.y):
        distances = ((pool_x.astype(np.float64) - image) ** 2).sum(axis=(1, 2))
        distances[pool_y == label] = np.inf
        expected |= set(np.argsort(distances)[:4].tolist())
    assert found.tolist() == sorted(expected)
    assert found.tolist() == nearest_other_digits(new, pool_x, pool_y, k=4, chunk=10_000).tolist()


def test_boundary_replay_never_brings_the_drawings_own_digit():
    from training.finetune import nearest_other_digits

    pool_x = np.stack([np.full((28, 28), value, np.uint8) for value in (100, 101, 150, 250)])
    pool_y = np.array([3, 3, 5, 8], np.uint8)
    new = Samples(np.full((1, 28, 28), 100, np.uint8), np.array([3], np.uint8))
    assert nearest_other_digits(new, pool_x, pool_y, k=1).tolist() == [2]  # the 5, not the identical 3s
    assert nearest_other_digits(new, pool_x, pool_y, k=5).tolist() == [2, 3]  # only two others exist
    assert len(nearest_other_digits(Samples.empty(), pool_x, pool_y, k=3)) == 0


def test_the_mix_adds_the_boundary_images_after_mnist(mnist):
    from training.finetune import nearest_other_digits

    config = FineTuneConfig(epochs=1, new_repeats=2, mnist_ratio=3.0, mnist_minimum=100, boundary_neighbours=5)
    new = Samples(mnist.x_val[:20], mnist.y_val[:20])
    mix = training_mix(new=new, replay=Samples.empty(), mnist=mnist, config=config, rng=np.random.default_rng(0))
    near = nearest_other_digits(new, mnist.x_train, mnist.y_train, k=5)
    assert 5 <= len(near) <= 100
    assert len(mix) == 40 + 120 + len(near)
    np.testing.assert_array_equal(mix.x[-len(near):], mnist.x_train[near])
    np.testing.assert_array_equal(mix.y[-len(near):], mnist.y_train[near])


def test_training_runs_use_the_deployment_settings_for_every_network():
    """The epochs and the MNIST minimum come from webapp/config.py, the one place that owns them."""
    from training import MODEL_NAMES
    from training.finetune import NETWORK_SETTINGS, fine_tune_config
    from webapp.config import from_environment

    config = from_environment({})
    assert set(NETWORK_SETTINGS) == set(MODEL_NAMES)
    for name in MODEL_NAMES:
        tune = fine_tune_config(name, epochs=config["FINETUNE_EPOCHS"], mnist_minimum=config["FINETUNE_MNIST_MINIMUM"])
        assert config["FINETUNE_EPOCHS"] == tune.epochs
        assert config["FINETUNE_MNIST_MINIMUM"] == tune.mnist_minimum


def _bn_layers(model):
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_recalibration_sets_each_conv_layers_statistics_to_those_of_the_drawings(tiny_models, mnist):
    import keras

    from training.preprocess import to_model_input
    from training.train import recalibrate_batch_norm

    _, versions = tiny_models
    model = keras.models.load_model(versions["cnn"].keras_path)
    dense_before = [np.array(layer.moving_mean) for layer in _bn_layers(model) if layer.name == "bn_dense"]
    drawings = mnist.x_val[:300]
    assert recalibrate_batch_norm(model, drawings) == ["bn1", "bn2"]
    for layer in _bn_layers(model):
        if layer.name == "bn_dense":  # one value a drawing: left as trained
            np.testing.assert_array_equal(np.array(layer.moving_mean), dense_before[0])
            continue
        # What reaches the layer once the layers before it are recalibrated, computed by Keras itself.
        inputs = keras.Model(model.inputs, layer.input).predict(to_model_input(drawings), verbose=0)
        np.testing.assert_allclose(np.array(layer.moving_mean), inputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.array(layer.moving_variance), inputs.var(axis=(0, 1, 2)), rtol=1e-3,
                                   atol=1e-5)


def test_recalibration_repairs_statistics_that_do_not_match_what_is_served(tiny_models, mnist):
    import keras

    from training.train import accuracy, recalibrate_batch_norm

    _, versions = tiny_models
    model = keras.models.load_model(versions["cnn"].keras_path)
    trained = accuracy(model, mnist.x_test[:2000], mnist.y_test[:2000])
    for layer in _bn_layers(model)[:2]:  # statistics from inputs far from the served ones
        layer.moving_mean.assign(layer.moving_mean.numpy() + 2.0)
        layer.moving_variance.assign(layer.moving_variance.numpy() * 9.0)
    assert accuracy(model, mnist.x_test[:2000], mnist.y_test[:2000]) < trained - 0.2
    recalibrate_batch_norm(model, mnist.x_val[:500])
    assert accuracy(model, mnist.x_test[:2000], mnist.y_test[:2000]) >= trained - 0.02


def test_recalibration_of_dense_layers_only_when_asked(tiny_models, mnist):
    import keras

    from training.train import recalibrate_batch_norm

    _, versions = tiny_models
    model = keras.models.load_model(versions["fnn"].keras_path)
    assert recalibrate_batch_norm(model, mnist.x_val[:300]) == []
    assert recalibrate_batch_norm(model, mnist.x_val[:300], spatial_only=False) == ["bn1", "bn2"]


def test_recalibration_refuses_a_network_that_is_not_a_chain(mnist):
    import keras
    import pytest

    from training.train import recalibrate_batch_norm

    inputs = keras.Input((28, 28, 1))
    conv = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    branch = keras.layers.BatchNormalization()(conv)
    outputs = keras.layers.Add()([conv, branch])
    with pytest.raises(ValueError, match="chain"):
        recalibrate_batch_norm(keras.Model(inputs, outputs), mnist.x_val[:10])


def test_calibration_uses_new_and_replayed_drawings_and_needs_enough_of_them():
    from training.finetune import calibration_drawings

    config = FineTuneConfig(epochs=1, mnist_minimum=500, calibration_minimum=50, calibration_limit=100)
    rng = np.random.default_rng(0)
    assert len(calibration_drawings(new=_samples(30, 1), replay=_samples(19, 2), config=config, rng=rng)) == 0
    assert len(calibration_drawings(new=_samples(30, 1), replay=_samples(20, 2), config=config, rng=rng)) == 50
    capped = calibration_drawings(new=_samples(300, 1), replay=_samples(300, 2), config=config, rng=rng)
    assert capped.shape == (100, 28, 28)
    assert {1, 2} == set(np.unique(capped).tolist())


def test_a_fine_tuned_network_serves_with_statistics_of_the_confirmed_drawings(tiny_models, mnist):
    import keras

    from training.finetune import fine_tune
    from training.preprocess import to_model_input

    _, versions = tiny_models
    new = Samples(mnist.x_val[:300], mnist.y_val[:300])
    config = FineTuneConfig(epochs=1, mnist_minimum=500, calibration_minimum=200)
    model = fine_tune(versions["cnn"].keras_path, name="cnn", new=new, replay=Samples.empty(), mnist=mnist,
                      config=config)
    first = _bn_layers(model)[0]
    inputs = keras.Model(model.inputs, first.input).predict(to_model_input(new.x), verbose=0)
    np.testing.assert_allclose(np.array(first.moving_mean), inputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    # Too few drawings: the statistics are those training left, not the drawings'.
    few = fine_tune(versions["cnn"].keras_path, name="cnn", new=Samples(new.x[:20], new.y[:20]),
                    replay=Samples.empty(), mnist=mnist, config=config)
    inputs = keras.Model(few.inputs, _bn_layers(few)[0].input).predict(to_model_input(new.x[:20]), verbose=0)
    assert not np.allclose(np.array(_bn_layers(few)[0].moving_mean), inputs.mean(axis=(0, 1, 2)), atol=1e-3)


def test_distillation_targets_keep_new_drawings_on_their_labels_and_blend_replay_with_the_parent(tiny_models, mnist):
    import keras

    from training.finetune import distillation_targets
    from training.preprocess import to_model_input

    _, versions = tiny_models
    parent = keras.models.load_model(versions["fnn"].keras_path)
    mix = Samples(mnist.x_val[:60], mnist.y_val[:60])
    targets = distillation_targets(parent, mix, learned=20, weight=0.75)
    assert targets.shape == (60, 10)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(targets[:20], np.eye(10)[mix.y[:20]])
    answers = parent.predict(to_model_input(mix.x[20:]), verbose=0)
    np.testing.assert_allclose(targets[20:], 0.25 * np.eye(10)[mix.y[20:]] + 0.75 * answers, atol=1e-5)


def test_distilled_replay_follows_the_parent_not_the_labels(tiny_models, mnist):
    """MNIST replayed with every label wrong (shifted by one) teaches the shift; replayed toward
    the parent's own answers (distillation 1), it keeps the network reading what its parent read."""
    from dataclasses import replace

    import keras

    from training.finetune import fine_tune, predicted

    _, versions = tiny_models
    path = versions["fnn"].keras_path
    parent = predicted(keras.models.load_model(path), mnist.x_test[:2000])
    shifted = replace(mnist, y_train=((mnist.y_train + 1) % 10).astype(np.uint8))
    new = Samples(mnist.x_val[:50], mnist.y_val[:50])
    agreement = {}
    for weight in (0.0, 1.0):
        config = FineTuneConfig(epochs=2, mnist_minimum=1500, augment="none", distillation=weight)
        model = fine_tune(path, name="fnn", new=new, replay=Samples.empty(), mnist=shifted, config=config)
        agreement[weight] = float(np.mean(predicted(model, mnist.x_test[:2000]) == parent))
    assert agreement[1.0] > 0.9
    assert agreement[0.0] < agreement[1.0] - 0.2
