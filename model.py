"""The networks, by name: the Keras CIFAR-10 tutorial's CNN and a stronger one.

A new network is one function returning a new keras.Model of softmax
outputs, and one MODELS entry; --model then accepts its name.
"""

import keras
import numpy as np
from keras import layers

from cifar10_research.dataset import IMAGE_SHAPE, NUM_CLASSES


def _tutorial_convolutions() -> list:
    """The Keras tutorial's input and its two valid 3x3 convolutions with pooling."""
    return [keras.Input(shape=IMAGE_SHAPE),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2)]


def simple_cnn() -> keras.Model:
    """The tutorial's Sequential CNN, 167,562 parameters, softmax outputs."""
    return keras.Sequential([
        *_tutorial_convolutions(),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        # float32 even under mixed precision, for a stable softmax and loss.
        layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"),
    ], name="simple-cnn")


def wide_cnn() -> keras.Model:
    """A VGG-style CNN with batch norm and dropout, 357,482 parameters, softmax outputs.

    Three blocks of one padded 3x3 convolution (32, 64, 128 filters), batch
    norm, relu, 2x2 max-pooling and dropout, then a dropped-out dense layer.
    One convolution per block, not VGG's two: a second one at full resolution
    makes a step about 8.6 times as slow as simple_cnn's on a 2-core CPU; this
    one takes about 3 times as long. The convolutions have no bias, since the
    batch norm that follows subtracts it again. Dropout is light (0.1 to 0.3)
    so that it learns about as fast per epoch as simple_cnn: 0.25 and 0.5, as
    in Keras' old cifar10_cnn example, left it 0.12 behind after 2 epochs.
    """
    blocks = []
    for filters, dropout in ((32, 0.1), (64, 0.2), (128, 0.3)):
        blocks += [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                   layers.BatchNormalization(),
                   layers.ReLU(),
                   layers.MaxPooling2D(2),
                   layers.Dropout(dropout)]
    return keras.Sequential([
        keras.Input(shape=IMAGE_SHAPE),
        *blocks,
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.3),
        # float32 even under mixed precision, for a stable softmax and loss.
        layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"),
    ], name="wide-cnn")


def fast_cnn() -> keras.Model:
    """The tutorial's CNN made for few epochs: 113,738 parameters, 10.2 MFLOPs an image.

    A third valid 3x3 convolution (128 filters, on the 6x6 maps left after two
    poolings) replaces the 64-unit dense bottleneck, so the classifier sees
    128 features of each of 4x4 places: 1.26 times simple_cnn's FLOPs
    (8.1 MFLOPs), and 0.737 validation accuracy after 6 epochs of the fast
    recipe where simple_cnn reached 0.722 at its best rate. No batch
    normalisation: on a 2-core CPU it made a step of simple_cnn's size 1.5 to
    2.6 times as slow, more than it saved in epochs.
    """
    return keras.Sequential([
        *_tutorial_convolutions(),
        layers.Conv2D(128, 3, activation="relu"),
        layers.Flatten(),
        # float32 even under mixed precision, for a stable softmax and loss.
        layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"),
    ], name="fast-cnn")


def flops_per_image(network: keras.Model) -> int:
    """Floating-point operations of one image's forward pass: 2 per multiply-add of
    the convolutions and dense layers (batch norm, activations and pooling,
    a few percent more, are left out, as is usual)."""
    total = 0
    for layer in network.layers:
        if isinstance(layer, layers.Conv2D):
            height, width, channels = layer.output.shape[1:]
            total += 2 * height * width * channels * int(np.prod(layer.kernel.shape[:3]))
        elif isinstance(layer, layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return total


# The networks by --model name; each call builds a new, randomly initialised model.
MODELS = {"simple_cnn": simple_cnn, "wide_cnn": wide_cnn, "fast_cnn": fast_cnn}
