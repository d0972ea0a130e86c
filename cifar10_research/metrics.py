"""Loss and accuracy summed over replicas and workers, read as exact means.

Keras 3 metrics have had distributed-aggregation bugs (keras#19891,
keras#21054). These totals are tf.distribute's own sync-on-read variables:
each replica adds to its local copy inside the step, with no communication,
and reading them from outside the step sums all copies.
"""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Averages:
    loss: float
    accuracy: float
    count: int


def _summed_over_replicas(shape) -> tf.Variable:
    """A float64 variable that replicas add to locally and reads as the total."""
    return tf.Variable(tf.zeros(shape, tf.float64), trainable=False,
                       synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.SUM)


class Totals:
    """Running sums of per-example loss, correct predictions and examples.

    Create it inside `strategy.scope()`; call `update` in replica context.
    """

    def __init__(self):
        self._sums = _summed_over_replicas([3])

    def update(self, per_example_loss, labels, probabilities):
        """Adds one replica's batch; rows with an all-zero label are padding."""
        weights = tf.reduce_sum(labels, axis=-1)
        per_example_loss = tf.cast(per_example_loss, tf.float32)
        correct = tf.cast(
            tf.equal(tf.argmax(labels, axis=-1), tf.argmax(probabilities, axis=-1)), tf.float32)
        self._sums.assign_add(tf.cast(tf.stack([
            tf.reduce_sum(per_example_loss * weights),
            tf.reduce_sum(correct * weights),
            tf.reduce_sum(weights)]), tf.float64))

    def sums(self) -> tuple[float, float, int]:
        """(loss sum, correct count, example count) over every replica so far."""
        loss, correct, count = self._sums.read_value().numpy()
        return float(loss), float(correct), int(count)

    def reset(self):
        self._sums.assign(tf.zeros([3], tf.float64))


def averages(loss_sum: float, correct: float, count: int) -> Averages:
    """Means from sums; NaN where nothing was counted."""
    if count == 0:
        return Averages(float("nan"), float("nan"), 0)
    return Averages(loss_sum / count, correct / count, count)


class ConfusionMatrix:
    """Counts of (true class, predicted class), summed over replicas.

    Create it inside `strategy.scope()`; call `update` in replica context.
    """

    def __init__(self, num_classes: int):
        self._num_classes = num_classes
        self._counts = _summed_over_replicas([num_classes, num_classes])

    def update(self, labels, probabilities):
        """Adds one replica's batch; rows with an all-zero label are padding."""
        self._counts.assign_add(tf.math.confusion_matrix(
            tf.argmax(labels, axis=-1), tf.argmax(probabilities, axis=-1),
            num_classes=self._num_classes, weights=tf.reduce_sum(labels, axis=-1),
            dtype=tf.float64))

    def result(self):
        """The (true, predicted) counts as a numpy array of whole numbers."""
        return self._counts.read_value().numpy().round().astype("int64")

    def reset(self):
        self._counts.assign(tf.zeros([self._num_classes] * 2, tf.float64))
