"""Moving averages of a model's weights: an exponential moving average that is
evaluated (--ema_decay), and airbench's Lookahead, which training continues
from (--lookahead_every).

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

LOOKAHEAD_BASE = 0.95  # airbench94's decay base, per step, and the power of the run's
LOOKAHEAD_POWER = 3.0  # fraction done that scales it.


def averaged_weights(model: keras.Model) -> list:
    """The weights an average follows: every float one, batch-norm statistics too."""
    return [weight for weight in model.weights
            if "float" in str(weight.dtype) and "seed_generator" not in weight.path]


def _copies(weights: list, name: str) -> list:
    """A non-trainable variable holding each of `weights` now, `name`_0, `name`_1, ..."""
    return [tf.Variable(tf.convert_to_tensor(weight), trainable=False, name=f"{name}_{index}")
            for index, weight in enumerate(weights)]


class WeightAverage:
    def __init__(self, model: keras.Model, decay: float):
        """Call in `strategy.scope()`, after the model is built."""
        self._weights = averaged_weights(model)
        self._decay = decay
        self.averages = _copies(self._weights, "average")

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


class Lookahead:
    """airbench94's Lookahead: after every `every`-th step past `start_step`,
    the slow weights move towards the weights, slow += (1 - rho) * (weights -
    slow), and the weights become the slow ones; rho = 0.95^every * (step /
    total_steps)^3 grows over the run, so the weights move fast early and are
    averaged strongly late. The first time, the slow weights are the weights.
    At each epoch's end the weights become the slow ones again. Checkpointed
    (`state`), so a resumed run goes on exactly.
    """

    def __init__(self, model: keras.Model, every: int, start_step: int, total_steps: int,
                 steps_per_epoch: int):
        """Call in `strategy.scope()`, after the model is built."""
        self._weights = averaged_weights(model)
        self._every, self._start, self._total = every, start_step, total_steps
        self._steps_per_epoch = steps_per_epoch
        self.slow = _copies(self._weights, "slow")
        self.started = tf.Variable(False, trainable=False)

    @property
    def state(self) -> list:
        return [*self.slow, self.started]

    def update(self, step: tf.Tensor) -> None:
        """After training step `step` (from 1), in cross-replica context. Only a
        due step or an epoch's end touches the weights: each replica keeps its
        own batch-norm statistics in between."""
        due = (step > self._start) & (step % self._every == 0)
        first = due & tf.logical_not(self.started)
        copied = due | (self.started & (step % self._steps_per_epoch == 0))
        tf.cond(copied, lambda: self._move_and_copy(step, due, first), lambda: None)
        self.started.assign(self.started | due)

    def _move_and_copy(self, step: tf.Tensor, due: tf.Tensor, first: tf.Tensor) -> None:
        """On a due step, the slow weights move (the first time: become the
        weights); then the weights become the slow ones."""
        fraction = tf.cast(step, tf.float32) / self._total
        keep = LOOKAHEAD_BASE ** self._every * fraction ** LOOKAHEAD_POWER  # airbench's rho.
        for slow, weight in zip(self.slow, self._weights):
            value = tf.cast(weight, slow.dtype)
            slow.assign(tf.where(first, value,
                                 tf.where(due, slow + (1 - keep) * (value - slow), slow)))
            weight.assign(tf.cast(slow, weight.dtype))
