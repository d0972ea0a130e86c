"""An exponential moving average of a model's weights (--ema_decay).

After each training step the average moves towards the weights: average =
d * average + (1 - d) * weights, with d = min(decay, (1 + step) / (10 + step))
as TensorFlow's ExponentialMovingAverage takes it with a step count, so the
first steps, far from the start, are not held back. Every weight is averaged,
batch-norm statistics included. The averaged weights are swapped into the
model to be evaluated, exported or predicted with (`swapped_in`); the raw
ones train. Both are checkpointed, so a resumed run goes on exactly.

Made in the strategy's scope, the averages are mirrored like the weights and
updated in cross-replica context, from the weights every replica holds alike:
no communication, the same on every replica and worker.
"""

import contextlib

import keras
import tensorflow as tf


class WeightAverage:
    def __init__(self, model: keras.Model, decay: float):
        """Call in `strategy.scope()`, after the model is built."""
        self._weights = [weight for weight in model.weights
                         if "float" in str(weight.dtype) and "seed_generator" not in weight.path]
        self._decay = decay
        self.averages = [tf.Variable(tf.convert_to_tensor(weight), trainable=False,
                                     name=f"average_{index}")
                         for index, weight in enumerate(self._weights)]

    def restart(self) -> None:
        """The averages become the weights, as when the average was made."""
        for average, weight in zip(self.averages, self._weights):
            average.assign(tf.cast(weight, average.dtype))

    def update(self, step: tf.Tensor) -> None:
        """Moves the averages towards the weights, after training step `step` (from 1)."""
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self._decay, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.averages, self._weights):
            average.assign(decay * average + (1.0 - decay) * tf.cast(weight, average.dtype))

    @contextlib.contextmanager
    def swapped_in(self):
        """The model holds the averaged weights within the block, its own after it."""
        own = [tf.identity(weight) for weight in self._weights]
        self._assign(self.averages)
        try:
            yield
        finally:
            self._assign(own)

    def _assign(self, values) -> None:
        for weight, value in zip(self._weights, values):
            weight.assign(value)
