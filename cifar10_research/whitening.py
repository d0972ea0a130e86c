"""A first convolution that whitens the images' small patches, fitted to the
training images (airbench's whitening layer, Jordan 2024).

Its kernel is not learnt: `adapt` sets it from the training images, once, at
a new run's start (`Learner.adapt`). It is a weight like the others, so
checkpoints, model.keras and saved_model/ hold the fitted kernel: a resumed
run, `--mode=eval` and an exported model use it without the data.
"""

import keras
import numpy as np
import tensorflow as tf

# airbench adds 5e-4 to the eigenvalues of images normalised to unit standard
# deviation; pixels in [0, 1] have one of about 0.25, so their variances are
# 0.25^2 times as large.
EPSILON = 5e-4 * 0.25 ** 2
CHUNK = 500  # Images whose patches are taken at once: about 50 MB of float64.


@keras.saving.register_keras_serializable(package="cifar10_research")
class PatchWhitening(keras.layers.Layer):
    """A valid `size` x `size` convolution with 2 x channels x size^2 filters:
    the eigenvectors of the training images' patch covariance, each divided
    by sqrt(its eigenvalue + epsilon), then the same negated (so that an
    activation after it keeps both signs). Its outputs' first half is then
    white over the training patches: uncorrelated, unit variance, zero mean.

    Before `adapt`, the kernel is random (as if it were any convolution's).
    The kernel is never trained; the bias, which `adapt` sets to centre the
    outputs, is.
    """

    def __init__(self, size: int = 2, epsilon: float = EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        filters = 2 * channels * self.size ** 2
        self.kernel = self.add_weight(name="kernel", shape=(self.size, self.size, channels,
                                                            filters), trainable=False)
        self.bias = self.add_weight(name="bias", shape=(filters,), initializer="zeros")

    def call(self, inputs):
        kernel, bias = tf.cast(self.kernel, inputs.dtype), tf.cast(self.bias, inputs.dtype)
        return tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID") + bias

    def adapt(self, images: np.ndarray) -> None:
        """Fits the kernel and bias to `images` (N, height, width, channels), as
        the layer receives them."""
        mean, covariance = _patch_moments(np.asarray(images, np.float64), self.size)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # Ascending.
        # Each eigenvector's sign is arbitrary: fixed here (its largest entry
        # positive), so that linear algebra libraries that differ in it agree
        # up to rounding.
        largest = np.abs(eigenvectors).argmax(axis=0)
        eigenvectors *= np.sign(eigenvectors[largest, np.arange(len(largest))])
        filters = (eigenvectors / np.sqrt(np.maximum(eigenvalues, 0) + self.epsilon))[:, ::-1]
        kernel = np.concatenate([filters, -filters], axis=1)  # (size^2 channels, filters)
        self.kernel.assign(kernel.reshape(self.kernel.shape).astype(np.float32))
        self.bias.assign((-mean @ kernel).astype(np.float32))

    def get_config(self):
        return {**super().get_config(), "size": self.size, "epsilon": self.epsilon}


def _patch_moments(images: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and covariance of every `size` x `size` patch of `images`, each
    patch flattened in the order of a convolution kernel's (rows, columns,
    channels)."""
    total, sum_, products = 0, 0.0, 0.0
    for start in range(0, len(images), CHUNK):
        windows = np.lib.stride_tricks.sliding_window_view(
            images[start:start + CHUNK], (size, size), axis=(1, 2))  # (N, H', W', C, rows, cols)
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * images.shape[-1])
        total += len(patches)
        sum_ = sum_ + patches.sum(axis=0)
        products = products + patches.T @ patches
    mean = sum_ / total
    return mean, products / total - np.outer(mean, mean)
