"""The training loop: `train_and_evaluate(config, workdir)` and its compiled steps."""

import hashlib
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import data
import distribute
import metrics
import model as model_lib
import plots
import run_folder
from config import Config
from errors import UserError
from progress import EpochProgress
from summaries import Summaries

GRID_IMAGES = 25  # The first test images, shown with their predictions each epoch.
HISTOGRAM_BATCH = 256  # Training images the epoch's gradient histograms are taken on.


class Trainer:
    """The model, optimizer, metric totals and compiled steps under one strategy."""

    def __init__(self, strategy: tf.distribute.Strategy, config: Config):
        self.strategy = strategy
        self.global_batch_size = config.batch_size
        # Everything with variables is made in the scope, and the optimizer's
        # slots are built now: Keras 3 would create them lazily inside the
        # first tf.function call, which fails under MirroredStrategy.
        with strategy.scope():
            self.model = model_lib.simple_cnn()
            self.optimizer = keras.optimizers.Adam(config.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.train_totals = metrics.Totals()
            self.eval_totals = metrics.Totals()
            self.confusion = metrics.ConfusionMatrix(data.NUM_CLASSES)
            self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)

    def distribute(self, dataset: tf.data.Dataset):
        """Splits each global batch over the replicas (and workers: by data)."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def _train_step(self, images, labels):
        """One replica's share of a step; Adam all-reduces the gradients."""
        with tf.GradientTape() as tape:
            probabilities = self.model(images, training=True)
            per_example_loss = keras.losses.categorical_crossentropy(labels, probabilities)
            loss = tf.nn.compute_average_loss(
                per_example_loss, global_batch_size=self.global_batch_size)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.train_totals.update(per_example_loss, labels, probabilities)

    @tf.function
    def train_steps(self, iterator, num_steps: tf.Tensor) -> None:
        """Runs `num_steps` steps in one call, to cut Python overhead per step."""
        for _ in tf.range(num_steps):
            self.strategy.run(self._train_step, args=next(iterator))

    def _eval_step(self, images, labels):
        probabilities = self.model(images, training=False)
        per_example_loss = keras.losses.categorical_crossentropy(labels, probabilities)
        self.eval_totals.update(per_example_loss, labels, probabilities)
        self.confusion.update(labels, probabilities)

    @tf.function
    def _eval_steps(self, iterator, num_steps: tf.Tensor) -> None:
        for _ in tf.range(num_steps):
            self.strategy.run(self._eval_step, args=next(iterator))

    def evaluate(self, split: data.Split) -> metrics.Averages:
        """Loss and accuracy over every example of `split`, each counted once.

        Also fills `self.confusion` for the same examples.
        """
        self.eval_totals.reset()
        self.confusion.reset()
        num_batches = -(-len(split) // self.global_batch_size)
        iterator = iter(self.distribute(data.eval_dataset(split, self.global_batch_size)))
        self._eval_steps(iterator, tf.constant(num_batches))
        return metrics.averages(*self.eval_totals.sums())

    def learning_rate(self) -> float:
        """The learning rate the optimizer applies at its current step."""
        return float(tf.convert_to_tensor(self.optimizer.learning_rate))

    def predict_classes(self, images: np.ndarray) -> np.ndarray:
        """Class indices for uint8 images, on this worker alone."""
        probabilities = self.model(images.astype(np.float32) / 255.0, training=False)
        return np.argmax(probabilities, axis=-1)

    def gradients(self, split: data.Split):
        """Gradients of the mean loss over the first HISTOGRAM_BATCH examples."""
        images = split.images[:HISTOGRAM_BATCH].astype(np.float32) / 255.0
        labels = tf.one_hot(split.labels[:HISTOGRAM_BATCH], data.NUM_CLASSES)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
                labels, self.model(images, training=False)))
        return tape.gradient(loss, self.model.trainable_variables)

    def weights_fingerprint(self) -> str:
        """A short hash of all weights: equal on every worker, and across reruns."""
        digest = hashlib.sha256()
        for weight in self.model.get_weights():
            digest.update(weight.tobytes())
        return digest.hexdigest()[:16]


def train_and_evaluate(config: Config, workdir: str, *,
                       strategy: tf.distribute.Strategy | None = None,
                       cifar: data.Cifar10 | None = None) -> dict:
    """Trains, evaluates after every epoch and fills the run folder `workdir`.

    `strategy` and `cifar` default to those the config names; tests pass their
    own. Returns the history, the test results and the weights' fingerprint.
    Every worker runs this; only the chief writes into `workdir`, the others
    write into a temporary folder that is removed at the end.
    """
    strategy = strategy or distribute.make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserError(f"--batch_size={config.batch_size} does not divide over the "
                        f"{replicas} replicas: pick a multiple of {replicas}")
    chief = distribute.is_chief(strategy)
    write_dir = workdir if chief else tempfile.mkdtemp(prefix="cifar10-worker-")
    try:
        cifar = cifar or data.load_cifar10(config.data_dir)
        run_folder.create(write_dir)
        return _run(config, write_dir, strategy, chief, cifar)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _run(config: Config, workdir: str, strategy, chief: bool, cifar: data.Cifar10) -> dict:
    steps_per_epoch = len(cifar.train) // config.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"--batch_size={config.batch_size} is larger than the "
                        f"{len(cifar.train)} training images: pick a smaller one")
    keras.utils.set_random_seed(config.seed)
    trainer = Trainer(strategy, config)
    if chief:
        trainer.model.summary()
    run_folder.write_text(os.path.join(workdir, run_folder.FLAGFILE), config.to_flagfile())
    summaries = Summaries(workdir)
    summaries.hparams(config)
    summaries.graph(trainer.model, cifar.test.images[:1].astype(np.float32) / 255.0)
    manager = tf.train.CheckpointManager(
        trainer.checkpoint, os.path.join(workdir, run_folder.CHECKPOINTS), max_to_keep=3)
    history = {key: [] for key in run_folder.HISTORY_KEYS}
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        progress = EpochProgress(epoch, config.epochs, steps_per_epoch,
                                 config.batch_size, enabled=chief)
        train = _train_epoch(trainer, cifar.train, config, epoch, steps_per_epoch,
                             summaries, progress)
        test = trainer.evaluate(cifar.test)
        seconds = time.perf_counter() - start
        summary = {"loss": train.loss, "accuracy": train.accuracy, "val_loss": test.loss,
                   "val_accuracy": test.accuracy, "seconds": seconds}
        for key, value in summary.items():
            history[key].append(value)
        summaries.epoch(epoch, train, test, seconds)
        _write_epoch_figures(trainer, cifar, summaries, epoch, config.histograms)
        summaries.flush()
        run_folder.write_history(workdir, history)
        manager.save(checkpoint_number=epoch)
        progress.finish(summary)
    summaries.test_results(config.epochs, test)
    summaries.flush()
    return _finish(trainer, cifar, workdir, history, test, chief)


def _train_epoch(trainer: Trainer, split: data.Split, config: Config, epoch: int,
                 steps_per_epoch: int, summaries: Summaries,
                 progress: EpochProgress) -> metrics.Averages:
    """Trains one epoch in calls of up to --steps_per_loop steps.

    A call also ends at each multiple of --log_every_n_steps, where the loss
    and accuracy of the steps since the last one are logged, and where a
    profile starts or ends. Only there and at the epoch's end are the totals
    read: under multi-worker a read is a collective op, so every worker must
    read at the same steps.
    """
    trainer.train_totals.reset()
    iterator = iter(trainer.distribute(
        data.train_dataset(split, config.batch_size, config.seed, epoch)))
    first_step = (epoch - 1) * steps_per_epoch
    logged, logged_at = (0.0, 0.0, 0), time.perf_counter()
    running = None
    step = 0
    while step < steps_per_epoch:
        _toggle_profiler(summaries, config.profile_range(), first_step + step)
        num_steps = min(config.steps_per_loop, steps_per_epoch - step,
                        _steps_to_next_stop(first_step + step, config))
        trainer.train_steps(iterator, tf.constant(num_steps))
        step += num_steps
        at_log_step = (first_step + step) % config.log_every_n_steps == 0
        if at_log_step or step == steps_per_epoch:
            sums = trainer.train_totals.sums()
            if at_log_step:
                now = time.perf_counter()
                window = metrics.averages(*(new - old for new, old in zip(sums, logged)))
                summaries.step(first_step + step, window,
                               trainer.learning_rate(),
                               window.count / (now - logged_at))
                logged, logged_at = sums, now
            running = metrics.averages(*sums)
        if progress.due():
            progress.show(step, running)
    _toggle_profiler(summaries, config.profile_range(), first_step + step)
    return running


def _steps_to_next_stop(global_step: int, config: Config) -> int:
    """Steps from `global_step` to the next log step or profile boundary."""
    steps = config.log_every_n_steps - global_step % config.log_every_n_steps
    profile = config.profile_range()
    if profile:
        for boundary in (profile[0] - 1, profile[1]):
            if boundary > global_step:
                steps = min(steps, boundary - global_step)
    return steps


def _toggle_profiler(summaries: Summaries, profile, steps_done: int) -> None:
    """Profiles steps START to END: starts after step START-1, stops after END."""
    if profile and steps_done == profile[0] - 1:
        summaries.start_profiler()
    elif profile and steps_done == profile[1]:
        summaries.stop_profiler()


def _write_epoch_figures(trainer: Trainer, cifar: data.Cifar10, summaries: Summaries,
                         epoch: int, histograms: bool) -> None:
    """The epoch's prediction grid, confusion matrix and (optionally) histograms."""
    summaries.images(epoch, plots.to_png(_prediction_grid(trainer, cifar)),
                     plots.to_png(plots.confusion_matrix(trainer.confusion.result(),
                                                         cifar.class_names)))
    if histograms:
        summaries.histograms(epoch, trainer.model.trainable_variables,
                             trainer.gradients(cifar.train))


def _prediction_grid(trainer: Trainer, cifar: data.Cifar10):
    images = cifar.test.images[:GRID_IMAGES]
    predicted = trainer.predict_classes(images)
    names = cifar.class_names
    return plots.prediction_grid(images, [names[i] for i in cifar.test.labels[:GRID_IMAGES]],
                                 [names[i] for i in predicted])


def _finish(trainer: Trainer, cifar: data.Cifar10, workdir: str, history: dict,
            test: metrics.Averages, chief: bool) -> dict:
    """Saves the model and figures and reports the final test accuracy."""
    trainer.model.save(os.path.join(workdir, run_folder.MODEL))
    figures = {
        run_folder.ACCURACY_PLOT: plots.curves(history, "accuracy"),
        run_folder.LOSS_PLOT: plots.curves(history, "loss"),
        run_folder.CONFUSION_PLOT: plots.confusion_matrix(trainer.confusion.result(),
                                                          cifar.class_names),
        run_folder.PREDICTIONS_PLOT: _prediction_grid(trainer, cifar),
        run_folder.SAMPLE_PLOT: plots.sample_prediction(
            cifar.test.images[0], cifar.class_names[cifar.test.labels[0]],
            cifar.class_names[trainer.predict_classes(cifar.test.images[:1])[0]]),
    }
    for name, figure in figures.items():
        plots.save(figure, os.path.join(workdir, name))
    fingerprint = trainer.weights_fingerprint()
    if chief:
        print(f"Test accuracy: {test.accuracy:.4f} (loss {test.loss:.4f}, "
              f"{test.count} images)")
        print(f"Run folder: {workdir}")
    print(f"Weights fingerprint: {fingerprint}")
    return {"history": history, "test_loss": test.loss, "test_accuracy": test.accuracy,
            "test_count": test.count, "weights_fingerprint": fingerprint}
