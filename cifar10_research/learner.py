"""The model, its optimizer and the compiled replica steps, under one strategy.

This is the step code (orbit's StandardTrainer); when steps run, and what is
logged and saved between them, is `loop.py`'s job.
"""

import contextlib
import functools
import hashlib
import math

import keras
import numpy as np
import tensorflow as tf

import data
import model as model_lib
from cifar10_research import averaging, metrics, optimizers, precision, schedules
from cifar10_research.config import Config
from cifar10_research.dataset import DATASETS, Split
from cifar10_research.errors import UserError
from cifar10_research.whitening import PatchWhitening

HISTOGRAM_BATCH = 256  # Training images the epoch's gradient histograms are taken on.
ADAPT_IMAGES = 5000  # Training images the layers fitted to the data see (airbench's number).


def crossentropy(labels, logits, label_smoothing: float = 0.0) -> tf.Tensor:
    """The loss of every image: categorical crossentropy from the logits, in
    float32 whatever the network computes in. The one loss of training,
    evaluation and gradients (label smoothing: training only)."""
    return keras.losses.categorical_crossentropy(
        labels, tf.cast(logits, tf.float32), from_logits=True, label_smoothing=label_smoothing)


def mean_of_views(weighted_logits: list) -> tf.Tensor:
    """Logits whose softmax is the weighted mean of the views' softmaxes
    (test-time augmentation averages the views' probabilities), from
    (weight, logits) pairs; one view's logits are returned as they are."""
    if len(weighted_logits) == 1:
        return weighted_logits[0][1]
    log_probabilities = [math.log(weight) + tf.nn.log_softmax(tf.cast(logits, tf.float32))
                         for weight, logits in weighted_logits]
    return tf.reduce_logsumexp(tf.stack(log_probabilities), axis=0)


def repeat(times: tf.Tensor, body) -> None:
    """Calls `body()` `times` times in a graph loop, inside a tf.function.

    Written as tf.while_loop, not `for _ in tf.range(times)`: the step
    functions are traced with autograph off, whose conversion of them (and of
    all they call) cost every training process about 1.5 s of CPU to start.
    """
    def once(count):
        body()  # Its variable updates run each iteration, in order (tf.function's rule).
        return count + 1
    tf.while_loop(lambda count: count < times, once, [tf.zeros_like(times)])


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
        self.norm_bias_lr_scale = config.norm_bias_lr_scale
        self.tta = config.tta
        self.l2_penalty = functools.partial(
            optimizers.l2_penalty, config.optimizer, config.weight_decay,
            lambda: self.model.trainable_variables)
        self.schedule = schedules.WarmupSchedule(
            config.lr_schedule, config.learning_rate, config.epochs * steps_per_epoch,
            round(config.warmup_epochs * steps_per_epoch))
        self._replica_step = (tf.function(self._train_step, jit_compile=True)
                              if config.jit_compile else self._train_step)
        # Everything with variables is made in the scope, and the optimizer's
        # slots are built now: Keras 3 would create them lazily inside the
        # first tf.function call, which fails under MirroredStrategy.
        self.preprocess = data.preprocessing()
        self.num_classes = DATASETS[config.dataset].num_classes
        with strategy.scope():
            with precision.dtype_policy(config.mixed_precision):
                self.model = model_lib.MODELS[config.model](self.num_classes)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.optimizer = optimizers.make_optimizer(
                config.optimizer, lambda: self.schedule(self.step), config.weight_decay,
                config.momentum, config.nesterov)
            if config.mixed_precision == "float16":
                # float16 gradients underflow unless the loss is scaled up first.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
            self.average = (averaging.WeightAverage(self.model, config.ema_decay)
                            if config.ema_decay else None)
            self.lookahead = (averaging.Lookahead(
                self.model, config.lookahead_every, config.lookahead_after_epochs * steps_per_epoch,
                config.epochs * steps_per_epoch, steps_per_epoch)
                if config.lookahead_every else None)
            self.train_totals = metrics.Totals(metrics.TRAINING)
            self.eval_totals = metrics.Totals(metrics.EVALUATION)
            self.confusion = metrics.ConfusionMatrix(self.num_classes)
            self.first_nonfinite_step = tf.Variable(
                -1, dtype=tf.int64, trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        # Trained in the first --whitening_bias_epochs only (in all when 0), then kept.
        self.held_biases = [layer.bias for layer in self.model._flatten_layers()
                            if isinstance(layer, PatchWhitening) and config.whitening_bias_epochs]
        self.held_from_step = config.whitening_bias_epochs * steps_per_epoch
        _refuse_settings_without_their_layers(config, self.held_biases, self.model)

    def checkpointed(self) -> dict:
        """What a checkpoint must hold to continue training exactly."""
        # Dropout's random state is not among the model's checkpointed
        # variables; without it a resumed run would draw other masks.
        dropout_seeds = [v for v in self.model.variables if "seed_generator" in v.path]
        return {"model": self.model, "optimizer": self.optimizer, "step": self.step,
                "dropout_seeds": dropout_seeds,
                **({"weight_average": self.average.averages} if self.average else {}),
                **({"lookahead": self.lookahead.state} if self.lookahead else {})}

    def averaged(self):
        """Within the block, the model holds the weights that are evaluated and
        exported: their moving average under --ema_decay, else the raw ones."""
        return self.average.swapped_in() if self.average else contextlib.nullcontext()

    def adapt(self, split: Split) -> None:
        """Fits the layers that are fitted to the data, not learnt (those with an
        `adapt` method, as Keras' preprocessing layers have; they take the
        network's input), to the first ADAPT_IMAGES images of `split`,
        preprocessed: at a new run's start, on every worker alike. A resume
        restores them with the other weights."""
        fitted = [layer for layer in self.model._flatten_layers() if hasattr(layer, "adapt")]
        if not fitted:
            return
        images = self.preprocess(split.images[:ADAPT_IMAGES]).numpy()
        for layer in fitted:
            layer.adapt(images)
        if self.average:
            self.average.restart()

    def distribute_dataset(self, dataset: tf.data.Dataset):
        """Splits each global batch over the replicas (and workers: by data)."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    @functools.cached_property
    def classifier(self) -> keras.Model:
        """The network as users call it, on uint8 images (see model.classifier)."""
        return model_lib.classifier(self.model)

    def _train_step(self, images, labels):
        """One replica's share of a step; the optimizer all-reduces the gradients."""
        with tf.GradientTape() as tape:
            logits = self.model(self.preprocess(images), training=True)
            per_example_loss = crossentropy(labels, logits, self.label_smoothing)
            loss = tf.nn.compute_average_loss(
                per_example_loss, global_batch_size=self.global_batch_size)
            loss += tf.nn.scale_regularization_loss(self.l2_penalty())  # Split over replicas.
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)  # apply_gradients unscales.
        variables = self.model.trainable_variables
        gradients = optimizers.rescaled(tape.gradient(loss, variables), variables,
                                        self.norm_bias_lr_scale)
        self._note_nonfinite(per_example_loss, gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.train_totals.update(labels, logits, per_example_loss)

    def _note_nonfinite(self, per_example_loss, gradients):
        """Remembers the first step whose loss or gradients were NaN or infinite."""
        finite = tf.reduce_all(tf.math.is_finite(per_example_loss))
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # (Loss scaling skips steps whose gradients overflow, by design.)
            finite = finite & tf.math.is_finite(tf.linalg.global_norm(gradients))
        first = self.first_nonfinite_step
        self.first_nonfinite_step.assign(tf.where(
            tf.logical_not(finite) & (first < 0), self.step + 1, first))

    @tf.function(autograph=False)
    def train_steps(self, iterator, num_steps: tf.Tensor) -> None:
        """Runs `num_steps` steps in one call, to cut Python overhead per step."""
        def train_step():
            before = [tf.identity(bias) for bias in self.held_biases]
            self.strategy.run(self._replica_step, args=next(iterator))
            self._hold(before)
            if self.lookahead:
                self.lookahead.update(self.step + 1)
            if self.average:
                self.average.update(self.step + 1)
            self.step.assign_add(1)
        repeat(num_steps, train_step)

    def _hold(self, before: list) -> None:
        """From step `held_from_step` on, puts the held biases back to their values
        `before` the step (their momentum still gathers gradients; each step's
        change to them is undone)."""
        keep = self.step >= self.held_from_step
        for bias, value in zip(self.held_biases, before):
            bias.assign(tf.where(keep, value, bias))

    def _eval_step(self, images, labels):
        views = data.TEST_VIEWS[self.tta](self.preprocess(images))
        logits = mean_of_views([(weight, self.model(view, training=False))
                                for weight, view in views])
        self.eval_totals.update(labels, logits, crossentropy(labels, logits))
        self.confusion.update(labels, logits)

    @tf.function(autograph=False)
    def _eval_steps(self, iterator, num_steps: tf.Tensor) -> None:
        repeat(num_steps, lambda: self.strategy.run(self._eval_step, args=next(iterator)))

    def evaluate(self, split: Split) -> metrics.Sums:
        """The sums of the evaluation metrics over every image of `split`, each
        counted once.

        Also fills `self.confusion` for the same images.
        """
        self.eval_totals.reset()
        self.confusion.reset()
        num_batches = -(-len(split) // self.global_batch_size)
        iterator = iter(self.distribute_dataset(data.eval_dataset(split, self.global_batch_size)))
        self._eval_steps(iterator, tf.constant(num_batches))
        return self.eval_totals.sums()

    def learning_rate(self) -> float:
        """The learning rate of the next step: the schedule's value at `step`."""
        return float(self.schedule(self.step.numpy()))

    def predict_classes(self, images: np.ndarray) -> np.ndarray:
        """Class indices for uint8 images, on this worker alone."""
        return np.argmax(self.model(self.preprocess(images), training=False), axis=-1)

    def gradients(self, split: Split):
        """Gradients of the mean loss over the first HISTOGRAM_BATCH images."""
        inputs = self.preprocess(split.images[:HISTOGRAM_BATCH])
        labels = tf.one_hot(split.labels[:HISTOGRAM_BATCH], self.num_classes)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(crossentropy(labels, self.model(inputs, training=False)))
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


def _refuse_settings_without_their_layers(config: Config, held_biases: list,
                                          network: keras.Model) -> None:
    """A setting for a kind of layer the network lacks would do nothing: refused."""
    if config.whitening_bias_epochs and not held_biases:
        raise UserError(f"--whitening_bias_epochs needs a network with a whitening layer "
                        f"(airbench's); --model={config.model} has none")
    if config.norm_bias_lr_scale != 1 and not any(
            weight.name == optimizers.NORM_OFFSET for weight in network.trainable_weights):
        raise UserError(f"--norm_bias_lr_scale needs a network with batch-norm offsets; "
                        f"--model={config.model} has none")
