"""Fine-tuning: what one run trains on, and that training runs use the library's defaults."""

from __future__ import annotations

import numpy as np

from training.finetune import FineTuneConfig, Samples, training_mix


def _samples(count: int, label: int) -> Samples:
    return Samples(np.full((count, 28, 28), label, np.uint8), np.full((count,), label, np.uint8))


def test_the_mix_repeats_new_drawings_caps_replay_and_adds_mnist(mnist):
    config = FineTuneConfig(new_repeats=2, replay_limit=50, mnist_ratio=3.0, mnist_minimum=100)
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
    mix = training_mix(new=_samples(10, 1), replay=Samples.empty(), mnist=mnist,
                       config=FineTuneConfig(), rng=np.random.default_rng(0))
    assert len(mix) == 10 * FineTuneConfig().new_repeats + FineTuneConfig().mnist_minimum


def test_training_runs_use_the_fine_tuning_defaults():
    """webapp/config.py cannot import training/ (TensorFlow), so its defaults are kept in step here."""
    from webapp.config import from_environment

    config = from_environment({})
    assert config["FINETUNE_EPOCHS"] == FineTuneConfig().epochs
    assert config["FINETUNE_MNIST_MINIMUM"] == FineTuneConfig().mnist_minimum
