"""The network: the Keras CIFAR-10 tutorial's CNN."""

import keras
from keras import layers

from data import IMAGE_SHAPE, NUM_CLASSES


def simple_cnn() -> keras.Model:
    """The tutorial's Sequential CNN, 167,562 parameters, softmax outputs."""
    return keras.Sequential([
        keras.Input(shape=IMAGE_SHAPE),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ], name="simple-cnn")
