"""Training-time augmentation: the ways people's canvas drawings differ from MNIST.

Preprocessing already normalises size and position, so what is left to learn is what it
cannot undo: slant and rotation, aspect, a pixel or two of centring jitter and stroke
thickness. Randomness is stateless and keyed by (seed, step), so runs are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Augmentation:
    rotation_degrees: float = 10.0
    scale: float = 0.10
    aspect: float = 0.06
    shear: float = 0.12
    shift_pixels: float = 1.5
    thicken_probability: float = 0.12
    thin_probability: float = 0.12
    # Elastic distortion (Simard et al. 2003): every pixel moves by a smooth random field, so
    # loops open or close, tails curl and strokes bow as they do from one writer to the next.
    # The field is drawn on a coarse grid (elastic_grid x elastic_grid) and upsampled, which
    # is what Simard's Gaussian-smoothed noise amounts to, at a fraction of the cost.
    elastic_pixels: float = 0.0
    elastic_grid: int = 4


# Elastic distortion of ~1.5 px raised the FNN's writers accuracy and lowered the CNN's (README, Benchmarks).
CNN_AUGMENTATION = Augmentation()
FNN_AUGMENTATION = Augmentation(elastic_pixels=1.5)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, spec: Augmentation) -> tf.Tensor:
    """Randomly transform a batch (N, 28, 28, 1) of float images; ``seed`` is an int64 pair."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)

    def uniform(index: int, limit: float) -> tf.Tensor:
        return tf.random.stateless_uniform([batch], seeds[index], -limit, limit)

    angle = uniform(0, math.radians(spec.rotation_degrees))
    scale = 1.0 + uniform(1, spec.scale)
    aspect = 1.0 + uniform(2, spec.aspect)
    shear = uniform(3, spec.shear)
    shift_x = uniform(4, spec.shift_pixels)
    shift_y = uniform(5, spec.shift_pixels)

    # Inverse map (output -> input pixel), about the image centre, as ImageProjectiveTransform wants.
    sx, sy = scale * aspect, scale / aspect
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0, a1 = cos / sx, (sin + shear * cos) / sx
    b0, b1 = -sin / sy, (cos - shear * sin) / sy
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a2 = cx - a0 * (cx + shift_x) - a1 * (cy + shift_y)
    b2 = cy - b0 * (cx + shift_x) - b1 * (cy + shift_y)
    if spec.elastic_pixels > 0:
        images = _warp(images, (a0, a1, a2, b0, b1, b2), _elastic_field(
            batch, tf.shape(images)[1:3], seeds[7], spec.elastic_pixels, spec.elastic_grid))
    else:
        zeros = tf.zeros_like(a0)
        transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
        )

    # Stroke thickness: a 2x2 max (thicker) or min (thinner) filter on a random subset.
    pick = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[6])
    thick = tf.nn.max_pool2d(images, ksize=2, strides=1, padding="SAME")
    thin = -tf.nn.max_pool2d(-images, ksize=2, strides=1, padding="SAME")
    images = tf.where(pick < spec.thicken_probability, thick, images)
    images = tf.where(pick > 1.0 - spec.thin_probability, thin, images)
    return tf.clip_by_value(images, 0.0, 1.0)


def _elastic_field(batch, size, seed, pixels: float, grid: int) -> tf.Tensor:
    """A smooth random displacement (N, H, W, 2) of up to ~``pixels``, upsampled from a coarse grid."""
    coarse = tf.random.stateless_uniform([batch, grid, grid, 2], seed, -pixels, pixels)
    return tf.image.resize(coarse, size, method="bicubic")


def _warp(images: tf.Tensor, affine, displacement: tf.Tensor) -> tf.Tensor:
    """Bilinear resampling of (N, H, W, 1) images: output pixel (y, x) reads the input at the
    affine map of (x, y) plus ``displacement`` there; outside the image reads 0."""
    a0, a1, a2, b0, b1, b2 = (tf.reshape(value, [-1, 1, 1]) for value in affine)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    source_x = a0 * xs + a1 * ys + a2 + displacement[..., 0]
    source_y = b0 * xs + b1 * ys + b2 + displacement[..., 1]
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    fx, fy = source_x - x0, source_y - y0
    flat = tf.reshape(images, [-1])
    base = tf.reshape(tf.range(batch) * height * width, [-1, 1, 1])

    def read(y, x):
        inside = (x >= 0) & (x <= tf.cast(width - 1, tf.float32)) & (y >= 0) & (y <= tf.cast(height - 1, tf.float32))
        index = base + tf.cast(tf.clip_by_value(y, 0, tf.cast(height - 1, tf.float32)), tf.int32) * width \
            + tf.cast(tf.clip_by_value(x, 0, tf.cast(width - 1, tf.float32)), tf.int32)
        return tf.where(inside, tf.gather(flat, index), 0.0)

    warped = ((1 - fy) * ((1 - fx) * read(y0, x0) + fx * read(y0, x0 + 1))
              + fy * ((1 - fx) * read(y0 + 1, x0) + fx * read(y0 + 1, x0 + 1)))
    return warped[..., tf.newaxis]


def training_dataset(
    x_uint8, y, *, batch_size: int, seed: int, spec: Augmentation | None, augmented=None
) -> tf.data.Dataset:
    """An endless, shuffled, augmented dataset of (images, labels) batches; with ``augmented``
    (one bool per image), only those images are augmented."""
    chosen = tf.ones([len(x_uint8)], tf.bool) if augmented is None else tf.constant(augmented, tf.bool)
    images = tf.data.Dataset.from_tensor_slices((x_uint8, y, chosen))
    dataset = images.shuffle(len(x_uint8), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True).enumerate()

    def prepare(step, triple):
        x, labels, pick = triple
        x = tf.cast(x, tf.float32)[..., tf.newaxis] / 255.0
        if spec is not None:
            varied = augment_batch(x, tf.stack([tf.constant(seed, tf.int64), step]), spec)
            x = varied if augmented is None else tf.where(pick[:, tf.newaxis, tf.newaxis, tf.newaxis], varied, x)
        return x, labels

    return dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)
