"""The two networks Inkling serves: a fully-connected net (FNN) and a convolutional net (CNN).

Both take a batch of preprocessed drawings, shape (N, 28, 28, 1), float32 in [0, 1], and
return the class probabilities (ten for digits, one per class of a label set), so that Keras and the exported ONNX graph answer alike.
"""

from __future__ import annotations

import keras
from keras import layers

from training import IMAGE_SIZE, NUM_CLASSES

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
# Moving statistics settle within ~50 steps, so short fine-tuning runs (and tests) serve
# with statistics that match their weights; Keras's 0.99 needs ~500.
BN_MOMENTUM = 0.9


def build_fnn(*, hidden: int = 1000, dropout: float = 0.3, num_classes: int = NUM_CLASSES) -> keras.Model:
    """The classic 784-1000-1000-10 multilayer perceptron, with batch norm and dropout."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = layers.Flatten()(inputs)
    for index in (1, 2):
        x = layers.Dense(hidden, use_bias=False, name=f"dense{index}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{index}")(x)
        x = layers.ReLU()(x)
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="fnn")


def build_cnn(*, filters: tuple[int, int] = (32, 64), dense: int = 256, dropout: float = 0.4,
              num_classes: int = NUM_CLASSES) -> keras.Model:
    """A LeNet-style CNN: two 5x5 conv blocks and a dense layer.

    Chosen for its cost on a CPU: about 2 MFLOPs per image, so a base training run fits in
    minutes on two cores, where the deeper 3x3 VGG-style nets cost 4-10x more for ~0.1 point.
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for index, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, 5, use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{index}")(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, use_bias=False, name="dense")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn_dense")(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")


BUILDERS = {"fnn": build_fnn, "cnn": build_cnn}


def build(name: str, **kwargs) -> keras.Model:
    try:
        return BUILDERS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted(BUILDERS)}") from None
