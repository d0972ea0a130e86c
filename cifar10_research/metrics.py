"""What a step measures, by name: each metric one definition, summed exactly over
replicas and workers.

A metric is the mean over images of a per-image value (its loss, a hit). In
the step, each replica adds its images' values, weighted (a padding row weighs
zero), to local sums: tf.distribute's sync-on-read variables, which need no
communication to add to and read as the total over every replica and worker.
(Keras 3's own metrics have had distributed-aggregation bugs, keras#19891 and
keras#21054.) Everything downstream (the loop, TensorBoard, history.json, the
progress line, results.json) goes over the names: a new metric is one
definition and one entry in TRAINING or EVALUATION.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

COUNT = "count"  # The sums' entry for the number of images.


@dataclasses.dataclass(frozen=True)
class Metric:
    """`per_image(labels, logits, per_image_loss)`: a value per image, to average.
    It runs inside the steps, traced without autograph: tensor ops only (tf.where,
    not a Python `if` on a tensor)."""

    name: str
    description: str
    per_image: Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def _true_class(labels: tf.Tensor) -> tf.Tensor:
    """The label's class; for a mixed image's soft label, the dominant one."""
    return tf.argmax(labels, axis=-1)


LOSS = Metric("loss", "categorical crossentropy", lambda labels, logits, loss: loss)
ACCURACY = Metric(
    "accuracy", "share of images whose most probable class is their label (for mixed "
    "images, their dominant label)",
    lambda labels, logits, loss: tf.equal(_true_class(labels), tf.argmax(logits, axis=-1)))
TOP5_ACCURACY = Metric(
    "top5_accuracy", "share of images whose label is among their 5 most probable classes",
    lambda labels, logits, loss: tf.math.in_top_k(_true_class(labels),
                                                  tf.cast(logits, tf.float32), 5))

# What the training steps measure, and what every evaluation measures.
TRAINING = (LOSS, ACCURACY)
EVALUATION = (LOSS, ACCURACY, TOP5_ACCURACY)


class Sums(dict):
    """{metric name: the sum of its per-image values, COUNT: images}. Added and
    subtracted by name; a name one side lacks (a metric younger than a resumed
    checkpoint) is left out."""

    @classmethod
    def zero(cls, measured: tuple[Metric, ...]) -> "Sums":
        return cls({**{metric.name: 0.0 for metric in measured}, COUNT: 0.0})

    def __add__(self, other: dict) -> "Sums":
        return Sums({name: self[name] + other[name] for name in self.keys() & other.keys()})

    def __sub__(self, other: dict) -> "Sums":
        return Sums({name: self[name] - other[name] for name in self.keys() & other.keys()})

    def means(self) -> dict[str, float]:
        """{metric name: mean per image}, for the metrics summed; {} with no image."""
        count = self.get(COUNT, 0)
        return {name: total / count for name, total in self.items() if name != COUNT and count}


def _summed_over_replicas(shape) -> tf.Variable:
    """A float64 variable that replicas add to locally and reads as the total."""
    return tf.Variable(tf.zeros(shape, tf.float64), trainable=False,
                       synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.SUM)


class Totals:
    """Running sums of `metrics` over every image since the last `reset`.

    Create it inside `strategy.scope()`; call `update` in replica context.
    """

    def __init__(self, metrics: tuple[Metric, ...]):
        self.metrics = metrics
        self._sums = _summed_over_replicas([len(metrics) + 1])

    def update(self, labels, logits, per_image_loss):
        """Adds one replica's batch; rows with an all-zero label are padding."""
        weights = tf.reduce_sum(labels, axis=-1)
        values = [tf.reduce_sum(tf.cast(metric.per_image(labels, logits, per_image_loss),
                                        tf.float32) * weights) for metric in self.metrics]
        self._sums.assign_add(tf.cast(tf.stack(values + [tf.reduce_sum(weights)]), tf.float64))

    def sums(self) -> Sums:
        """The sums over every replica (and worker) so far."""
        values = self._sums.read_value().numpy().tolist()
        return Sums(zip([metric.name for metric in self.metrics] + [COUNT], values))

    def reset(self):
        self._sums.assign(tf.zeros([len(self.metrics) + 1], tf.float64))


class ConfusionMatrix:
    """Counts of (true class, predicted class), summed over replicas.

    Create it inside `strategy.scope()`; call `update` in replica context.
    """

    def __init__(self, num_classes: int):
        self._num_classes = num_classes
        self._counts = _summed_over_replicas([num_classes, num_classes])

    def update(self, labels, logits):
        """Adds one replica's batch; rows with an all-zero label are padding."""
        self._counts.assign_add(tf.math.confusion_matrix(
            _true_class(labels), tf.argmax(logits, axis=-1),
            num_classes=self._num_classes, weights=tf.reduce_sum(labels, axis=-1),
            dtype=tf.float64))

    def result(self):
        """The (true, predicted) counts as a numpy array of whole numbers."""
        return self._counts.read_value().numpy().round().astype("int64")

    def reset(self):
        self._counts.assign(tf.zeros([self._num_classes] * 2, tf.float64))
