"""The model, its optimizer and the compiled replica steps, under one strategy.

This is the step code (orbit's StandardTrainer); when steps run, and what is
logged and saved between them, is `loop.py`'s job.
"""

import hashlib

import keras
import numpy as np
import tensorflow as tf

import data
import model as model_lib
from cifar10_research import metrics, precision, schedules
from cifar10_research.config import Config
from cifar10_research.dataset import NUM_CLASSES, Split

HISTOGRAM_BATCH = 256  # Training images the epoch's gradient histograms are taken on.


class Learner:
    """Trains and evaluates one model; `step` counts the training steps taken.

    `step` is the run's one step counter: checkpointed with the weights, read
    by the learning-rate schedule, and the loop derives the epoch and the
    position in it from it. (Keras' `optimizer.iterations` counts only the
    updates applied, which float16 loss scaling skips when gradients overflow.)
    """

    def __init__(self, strategy: tf.distribute.Strategy, config: Config, steps_per_epoch: int):
        self.strategy = strategy
        self.global_batch_size = config.batch_size
        self.label_smoothing = config.label_smoothing
        self.tta = config.tta
        self.schedule = schedules.WarmupSchedule(
            config.lr_schedule, config.learning_rate, config.epochs * steps_per_epoch,
            round(config.warmup_epochs * steps_per_epoch))
        self._replica_step = (tf.function(self._train_step, jit_compile=True)
                              if config.jit_compile else self._train_step)
        # Everything with variables is made in the scope, and the optimizer's
        # slots are built now: Keras 3 would create them lazily inside the
        # first tf.function call, which fails under MirroredStrategy.
        with strategy.scope():
            with precision.dtype_policy(config.mixed_precision):
                self.model = model_lib.MODELS[config.model]()
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.optimizer = schedules.make_optimizer(
                lambda: self.schedule(self.step), config.weight_decay)
            if config.mixed_precision == "float16":
                # float16 gradients underflow unless the loss is scaled up first.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
            self.train_totals = metrics.Totals()
            self.eval_totals = metrics.Totals()
            self.confusion = metrics.ConfusionMatrix(NUM_CLASSES)
            self.first_nonfinite_step = tf.Variable(
                -1, dtype=tf.int64, trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def checkpointed(self) -> dict:
        """What a checkpoint must hold to continue training exactly."""
        # Dropout's random state is not among the model's checkpointed
        # variables; without it a resumed run would draw other masks.
        dropout_seeds = [v for v in self.model.variables if "seed_generator" in v.path]
        return {"model": self.model, "optimizer": self.optimizer, "step": self.step,
                "dropout_seeds": dropout_seeds}

    def distribute_dataset(self, dataset: tf.data.Dataset):
        """Splits each global batch over the replicas (and workers: by data)."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def _train_step(self, images, labels):
        """One replica's share of a step; the optimizer all-reduces the gradients."""
        with tf.GradientTape() as tape:
            probabilities = self.model(images, training=True)
            per_example_loss = keras.losses.categorical_crossentropy(
                labels, probabilities, label_smoothing=self.label_smoothing)
            loss = tf.nn.compute_average_loss(
                per_example_loss, global_batch_size=self.global_batch_size)
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)  # apply_gradients unscales.
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        self._note_nonfinite(per_example_loss, gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.train_totals.update(per_example_loss, labels, probabilities)

    def _note_nonfinite(self, per_example_loss, gradients):
        """Remembers the first step whose loss or gradients were NaN or infinite."""
        finite = tf.reduce_all(tf.math.is_finite(per_example_loss))
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # (Loss scaling skips steps whose gradients overflow, by design.)
            finite = finite & tf.math.is_finite(tf.linalg.global_norm(gradients))
        first = self.first_nonfinite_step
        self.first_nonfinite_step.assign(tf.where(
            tf.logical_not(finite) & (first < 0), self.step + 1, first))

    @tf.function
    def train_steps(self, iterator, num_steps: tf.Tensor) -> None:
        """Runs `num_steps` steps in one call, to cut Python overhead per step."""
        for _ in tf.range(num_steps):
            self.strategy.run(self._replica_step, args=next(iterator))
            self.step.assign_add(1)

    def _eval_step(self, images, labels):
        probabilities = self.model(images, training=False)
        if self.tta:  # The mean with the mirror images' predictions.
            mirrored = self.model(tf.reverse(images, axis=[2]), training=False)
            probabilities = (probabilities + mirrored) / 2
        per_example_loss = keras.losses.categorical_crossentropy(labels, probabilities)
        self.eval_totals.update(per_example_loss, labels, probabilities)
        self.confusion.update(labels, probabilities)

    @tf.function
    def _eval_steps(self, iterator, num_steps: tf.Tensor) -> None:
        for _ in tf.range(num_steps):
            self.strategy.run(self._eval_step, args=next(iterator))

    def evaluate(self, split: Split) -> metrics.Averages:
        """Loss and accuracy over every example of `split`, each counted once.

        Also fills `self.confusion` for the same examples.
        """
        self.eval_totals.reset()
        self.confusion.reset()
        num_batches = -(-len(split) // self.global_batch_size)
        iterator = iter(self.distribute_dataset(data.eval_dataset(split, self.global_batch_size)))
        self._eval_steps(iterator, tf.constant(num_batches))
        return metrics.averages(*self.eval_totals.sums())

    def learning_rate(self) -> float:
        """The learning rate of the next step: the schedule's value at `step`."""
        return float(self.schedule(self.step.numpy()))

    def predict_classes(self, images: np.ndarray) -> np.ndarray:
        """Class indices for uint8 images, on this worker alone."""
        probabilities = self.model(images.astype(np.float32) / 255.0, training=False)
        return np.argmax(probabilities, axis=-1)

    def gradients(self, split: Split):
        """Gradients of the mean loss over the first HISTOGRAM_BATCH examples."""
        images = split.images[:HISTOGRAM_BATCH].astype(np.float32) / 255.0
        labels = tf.one_hot(split.labels[:HISTOGRAM_BATCH], NUM_CLASSES)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
                labels, self.model(images, training=False)))
        return tape.gradient(loss, self.model.trainable_variables)

    def weights_are_finite(self) -> bool:
        return all(np.isfinite(weight).all() for weight in self.model.get_weights())

    def weights_fingerprint(self) -> str:
        """A short hash of all weights: equal on every worker, and across reruns
        with --deterministic."""
        digest = hashlib.sha256()
        for weight in self.model.get_weights():
            digest.update(weight.tobytes())
        return digest.hexdigest()[:16]
