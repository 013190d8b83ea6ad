"""Training-time augmentation: seeded, shape- and range-preserving, and the warp is the affine's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from training.augment import Augmentation, _warp, augment_batch, training_dataset  # noqa: E402

ELASTIC = Augmentation(elastic_pixels=2.0)


@pytest.fixture(scope="module")
def images(mnist):
    return tf.constant(mnist.x_train[:32, ..., None] / 255.0, tf.float32)


@pytest.mark.parametrize("spec", [Augmentation(), ELASTIC], ids=["affine", "elastic"])
def test_augmentation_is_seeded_and_keeps_shape_and_range(images, spec):
    first = augment_batch(images, tf.constant([7, 1], tf.int64), spec).numpy()
    again = augment_batch(images, tf.constant([7, 1], tf.int64), spec).numpy()
    other = augment_batch(images, tf.constant([7, 2], tf.int64), spec).numpy()
    assert first.shape == (32, 28, 28, 1) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_the_warp_without_displacement_is_the_projective_transform(images):
    rng = np.random.default_rng(0)
    affine = [tf.constant(values, tf.float32) for values in (
        rng.uniform(0.9, 1.1, 32), rng.uniform(-0.2, 0.2, 32), rng.uniform(-2, 2, 32),
        rng.uniform(-0.2, 0.2, 32), rng.uniform(0.9, 1.1, 32), rng.uniform(-2, 2, 32))]
    zeros = tf.zeros_like(affine[0])
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.stack(affine + [zeros, zeros], axis=1), output_shape=[28, 28],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    warped = _warp(images, affine, tf.zeros([32, 28, 28, 2]))
    np.testing.assert_allclose(warped.numpy(), expected.numpy(), atol=1e-6)


def test_elastic_distortion_bends_strokes_locally(images):
    # Only the elastic field: no rotation, scale, shift or stroke change.
    spec = Augmentation(rotation_degrees=0, scale=0, aspect=0, shear=0, shift_pixels=0,
                        thicken_probability=0, thin_probability=0, elastic_pixels=2.0)
    original = images.numpy()
    warped = augment_batch(images, tf.constant([3, 0], tf.int64), spec).numpy()
    moved = np.abs(warped - original).mean(axis=(1, 2, 3))
    assert (moved > 0.01).all()
    # A smooth field of a couple of pixels keeps the digit where it was, with about its ink.
    ink, warped_ink = original.sum(axis=(1, 2, 3)), warped.sum(axis=(1, 2, 3))
    assert np.all(np.abs(warped_ink / ink - 1) < 0.35)
    ys = np.arange(28)[None, :, None, None]
    centre = (ys * original).sum(axis=(1, 2, 3)) / ink
    warped_centre = (ys * warped).sum(axis=(1, 2, 3)) / warped_ink
    assert np.all(np.abs(warped_centre - centre) < 2.0)


def test_training_dataset_is_reproducible(mnist):
    def first_batch(seed):
        dataset = training_dataset(mnist.x_train[:256], mnist.y_train[:256], batch_size=64, seed=seed,
                                   spec=replace(ELASTIC))
        return next(iter(dataset))

    (x1, y1), (x2, y2), (x3, _) = first_batch(5), first_batch(5), first_batch(6)
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert not np.array_equal(x1.numpy(), x3.numpy())


def test_training_dataset_augments_only_the_images_it_is_told_to(mnist):
    """Fine-tuning varies the new drawings and replays MNIST as it is."""
    x, count = mnist.x_train[:128], 128
    # The label is each image's index, so a batch says which images it holds.
    dataset = training_dataset(x, np.arange(count), batch_size=count, seed=3, spec=Augmentation(),
                               augmented=np.arange(count) < 32)
    images, indices = (value.numpy() for value in next(iter(dataset)))
    clean = x[indices].astype(np.float32)[..., None] / 255.0
    chosen = indices < 32
    np.testing.assert_array_equal(images[~chosen], clean[~chosen])
    assert all(not np.allclose(images[i], clean[i]) for i in np.flatnonzero(chosen))
