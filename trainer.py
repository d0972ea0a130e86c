"""The training loop: `train_and_evaluate(config, workdir)` and its compiled steps."""

import contextlib
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
import schedules
from checkpoints import Checkpoints
from config import Config
from errors import Interrupted, UserError
from progress import EpochProgress
from stopping import StopRequests
from summaries import Summaries

MIXED_PRECISION_POLICIES = {"none": "float32", "float16": "mixed_float16",
                            "bfloat16": "mixed_bfloat16"}
GRID_IMAGES = 25  # The first test images, shown with their predictions each epoch.
HISTOGRAM_BATCH = 256  # Training images the epoch's gradient histograms are taken on.


class Trainer:
    """The model, optimizer, metric totals and compiled steps under one strategy."""

    def __init__(self, strategy: tf.distribute.Strategy, config: Config, steps_per_epoch: int):
        self.strategy = strategy
        self.global_batch_size = config.batch_size
        self.label_smoothing = config.label_smoothing
        self._replica_step = (tf.function(self._train_step, jit_compile=True)
                              if config.jit_compile else self._train_step)
        # Everything with variables is made in the scope, and the optimizer's
        # slots are built now: Keras 3 would create them lazily inside the
        # first tf.function call, which fails under MirroredStrategy.
        with strategy.scope():
            with _dtype_policy(MIXED_PRECISION_POLICIES[config.mixed_precision]):
                self.model = model_lib.build(config.model)
            self.optimizer = schedules.make_optimizer(schedules.learning_rate_schedule(
                config.lr_schedule, config.learning_rate, config.epochs * steps_per_epoch,
                config.warmup_epochs * steps_per_epoch), config.weight_decay)
            if config.mixed_precision == "float16":
                # float16 gradients underflow unless the loss is scaled up first.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
            self.train_totals = metrics.Totals()
            self.eval_totals = metrics.Totals()
            self.confusion = metrics.ConfusionMatrix(data.NUM_CLASSES)
            # Where training stands, saved with the weights so that a resumed
            # run continues exactly: (epochs completed, steps into the next),
            # and that epoch's training sums so far and at its last log step.
            self.position = tf.Variable([0, 0], dtype=tf.int64, trainable=False)
            self.carried_sums = tf.Variable(tf.zeros([2, 3], tf.float64), trainable=False)
            self.first_nonfinite_step = tf.Variable(
                -1, dtype=tf.int64, trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            # Dropout's random state is not among the model's checkpointed
            # variables; without it a resumed run would draw other masks.
            dropout_seeds = [v for v in self.model.variables if "seed_generator" in v.path]
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer, position=self.position,
                carried_sums=self.carried_sums, dropout_seeds=dropout_seeds)

    def distribute_dataset(self, dataset: tf.data.Dataset):
        """Splits each global batch over the replicas (and workers: by data)."""
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def _train_step(self, images, labels):
        """One replica's share of a step; Adam all-reduces the gradients."""
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
        nonfinite = tf.logical_not(finite)
        first = self.first_nonfinite_step
        self.first_nonfinite_step.assign(tf.where(
            nonfinite & (first < 0), self.optimizer.iterations + 1, first))

    @tf.function
    def train_steps(self, iterator, num_steps: tf.Tensor) -> None:
        """Runs `num_steps` steps in one call, to cut Python overhead per step."""
        for _ in tf.range(num_steps):
            self.strategy.run(self._replica_step, args=next(iterator))

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
        iterator = iter(self.distribute_dataset(data.eval_dataset(split, self.global_batch_size)))
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
        """A short hash of all weights: equal on every worker, and across reruns
        with --deterministic."""
        digest = hashlib.sha256()
        for weight in self.model.get_weights():
            digest.update(weight.tobytes())
        return digest.hexdigest()[:16]


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Keras' global dtype policy while layers are built: they keep it."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def train_and_evaluate(config: Config, workdir: str, *,
                       strategy: tf.distribute.Strategy | None = None,
                       cifar: data.Cifar10 | None = None) -> dict:
    """Trains, evaluates after every epoch and fills the run folder `workdir`.

    A run folder that holds checkpoints is resumed from the latest one; a
    finished one is only evaluated. `strategy` and `cifar` default to those
    the config names; tests pass their own. Returns the history, the test
    results and the weights' fingerprint. Every worker runs this; only the
    chief writes into `workdir`, the others write into a temporary folder
    that is removed at the end.
    """
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = strategy or distribute.make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserError(f"--batch_size={config.batch_size} does not divide over the "
                        f"{replicas} replicas: pick a multiple of {replicas}")
    if config.jit_compile and replicas > 1 and not tf.config.list_logical_devices("GPU"):
        raise UserError("--jit_compile cannot mirror over logical CPU devices (XLA places "
                        "every replica's variables on one CPU): drop one of the two")
    chief = distribute.is_chief(strategy)
    write_dir = workdir if chief else tempfile.mkdtemp(prefix="cifar10-worker-")
    try:
        cifar = cifar or data.load_cifar10(config.data_dir)
        run_folder.prepare(write_dir)
        return TrainingRun(config, workdir, write_dir, strategy, chief, cifar).run()
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def evaluate_checkpoint(config: Config, workdir: str, *,
                        strategy: tf.distribute.Strategy | None = None,
                        cifar: data.Cifar10 | None = None) -> dict:
    """--mode=eval: the test results of `config.checkpoint` or the run's latest.

    Prints them and writes them to `<workdir>/eval.json`.
    """
    strategy = strategy or distribute.make_strategy(config.strategy)
    cifar = cifar or data.load_cifar10(config.data_dir)
    trainer = Trainer(strategy, config, len(cifar.train) // config.batch_size)
    checkpoints = Checkpoints(trainer.checkpoint, _checkpoint_dir(workdir),
                              _checkpoint_dir(workdir), config.keep_checkpoints)
    path = config.checkpoint or checkpoints.restore_latest()
    if path is None:
        raise UserError(f"{_checkpoint_dir(workdir)} holds no checkpoint: train the run "
                        f"first, or pass --checkpoint")
    if config.checkpoint:
        try:
            checkpoints.restore(path)
        except (tf.errors.OpError, IndexError) as error:
            raise UserError(f"cannot read checkpoint {path} ({type(error).__name__}): pass "
                            f"a path like runs/NAME/checkpoints/ckpt-781 (no file "
                            f"extension)") from None
    test = trainer.evaluate(cifar.test)
    results = {"checkpoint": path, "test_loss": test.loss, "test_accuracy": test.accuracy,
               "test_count": test.count}
    run_folder.write_json(os.path.join(workdir, run_folder.EVAL_RESULTS), results)
    print(f"Checkpoint {path}")
    _print_test_results(test)
    return results


def _checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, run_folder.CHECKPOINTS)


class TrainingRun:
    """One call of train_and_evaluate: the state its epochs and steps share."""

    def __init__(self, config: Config, workdir: str, write_dir: str, strategy, chief: bool,
                 cifar: data.Cifar10):
        self.steps_per_epoch = len(cifar.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(f"--batch_size={config.batch_size} is larger than the "
                            f"{len(cifar.train)} training images: pick a smaller one")
        self.config, self.workdir, self.write_dir = config, workdir, write_dir
        self.chief, self.cifar = chief, cifar
        # A signal reaches one worker of several: that one alone must not stop
        # at a step of its own choosing, as the others would wait for it.
        self.single_process = getattr(strategy, "cluster_resolver", None) is None
        keras.utils.set_random_seed(config.seed)
        self.trainer = Trainer(strategy, config, self.steps_per_epoch)
        # Every worker resumes from the chief's checkpoints (a shared folder
        # on several machines); each saves into its own write_dir.
        self.checkpoints = Checkpoints(self.trainer.checkpoint, _checkpoint_dir(workdir),
                                       _checkpoint_dir(write_dir), config.keep_checkpoints)
        self.summaries = Summaries(write_dir)
        self.history = {key: [] for key in run_folder.HISTORY_KEYS}

    def run(self) -> dict:
        completed, steps_done = self._resume_or_start()
        if completed >= self.config.epochs:
            print(f"{self.workdir} has finished its {completed} epochs: evaluating it.")
            test = self.trainer.evaluate(self.cifar.test)
            if not os.path.exists(os.path.join(self.write_dir, run_folder.MODEL)):
                self._finish(test)  # It was stopped after its last checkpoint.
            return self._report(test)
        with StopRequests(enabled=self.single_process) as stops:
            for epoch in range(completed + 1, self.config.epochs + 1):
                test = self._epoch(epoch, steps_done, stops)
                steps_done = 0
                if stops.signal and epoch < self.config.epochs:
                    self._stop(stops, epoch * self.steps_per_epoch)
        self._finish(test)
        return self._report(test)

    def _finish(self, test: metrics.Averages) -> None:
        self.summaries.test_results(self.config.epochs, test)
        self.summaries.flush()
        self._save_model_and_figures()

    def _resume_or_start(self) -> tuple[int, int]:
        """Restores the latest checkpoint, if any, and (re)writes the run's flags,
        hparams and graph. Returns (epochs completed, steps into the next)."""
        flagfile = os.path.join(self.workdir, run_folder.FLAGFILE)
        path = self.checkpoints.restore_latest()
        if path is None:
            run_folder.refuse_stale(self.workdir)
        else:
            changed = self.config.changes_from(run_folder.read_text(flagfile))
            if changed and not self.config.force:
                raise UserError(f"{self.workdir} was started with other settings: "
                                f"{', '.join(changed)}; rerun with its flags (--flagfile="
                                f"{flagfile}), another --run_name, or --force")
            completed, steps_done = (int(n) for n in self.trainer.position.numpy())
            if steps_done and any(change.startswith("--batch_size") for change in changed):
                raise UserError(f"{path} stopped in the middle of an epoch, counted in "
                                f"batches of the old --batch_size: resume with it, or from "
                                f"an epoch-end checkpoint")
            self.history = run_folder.read_history(self.workdir, epochs=completed)
            print(f"Resuming {path}: epoch {completed + 1}, after step {steps_done} of "
                  f"{self.steps_per_epoch}")
        if self.chief and path is None:
            self.trainer.model.summary()
        run_folder.write_text(os.path.join(self.write_dir, run_folder.FLAGFILE),
                              self.config.to_flagfile())
        self.summaries.hparams(self.config)
        self.summaries.graph(self.trainer.model,
                             self.cifar.test.images[:1].astype(np.float32) / 255.0)
        position = self.trainer.position.numpy()
        return int(position[0]), int(position[1])

    def _epoch(self, epoch: int, steps_done: int, stops: StopRequests) -> metrics.Averages:
        """Trains (the rest of) an epoch, evaluates, logs and checkpoints it."""
        start = time.perf_counter()
        progress = EpochProgress(epoch, self.config.epochs, self.steps_per_epoch,
                                 self.config.batch_size, enabled=self.chief)
        train = self.train_epoch(epoch, steps_done, stops, progress)
        test = self.trainer.evaluate(self.cifar.test)
        seconds = time.perf_counter() - start
        summary = {"loss": train.loss, "accuracy": train.accuracy, "val_loss": test.loss,
                   "val_accuracy": test.accuracy, "seconds": seconds}
        for key, value in summary.items():
            self.history[key].append(value)
        self.summaries.epoch(epoch, train, test, seconds)
        _write_epoch_figures(self.trainer, self.cifar, self.summaries, epoch,
                             self.config.histograms)
        self.summaries.flush()
        # History first: after a crash in between, resuming redoes this epoch
        # and truncates the history to the checkpoint's epochs.
        run_folder.write_history(self.write_dir, self.history)
        self._save(epoch, 0, np.zeros([2, 3]))
        progress.finish(summary)
        return test

    def train_epoch(self, epoch: int, steps_done: int, stops: StopRequests,
                    progress: EpochProgress) -> metrics.Averages:
        """Trains an epoch from step `steps_done` in calls of up to --steps_per_loop steps.

        A call also ends at log, checkpoint and profile steps. Only there, at
        a stop request and at the epoch's end are the totals read: under
        multi-worker a read is a collective op, so every worker must read at
        the same steps.
        """
        config, trainer = self.config, self.trainer
        trainer.train_totals.reset()
        carried, logged = trainer.carried_sums.numpy() if steps_done else np.zeros([2, 3])
        iterator = iter(trainer.distribute_dataset(data.train_dataset(
            self.cifar.train, config.batch_size, config.seed, epoch, skip_batches=steps_done,
            augmentation=config.augment)))
        first_step = (epoch - 1) * self.steps_per_epoch
        running = metrics.averages(*carried) if steps_done else None
        logged_at, step = time.perf_counter(), steps_done
        while step < self.steps_per_epoch:
            _toggle_profiler(self.summaries, config.profile_range(), first_step + step)
            num_steps = min(config.steps_per_loop, self.steps_per_epoch - step,
                            _steps_to_next_stop(first_step + step, config))
            trainer.train_steps(iterator, tf.constant(num_steps))
            step += num_steps
            global_step = first_step + step
            at_log_step = global_step % config.log_every_n_steps == 0
            mid_epoch = step < self.steps_per_epoch
            at_checkpoint = mid_epoch and config.checkpoint_every_n_steps and (
                global_step % config.checkpoint_every_n_steps == 0)
            stopping = mid_epoch and stops.signal is not None
            if at_log_step or at_checkpoint or stopping or not mid_epoch:
                sums = np.array(trainer.train_totals.sums()) + carried
                self._check_finite(sums, epoch)
                if at_log_step:
                    now = time.perf_counter()
                    window = metrics.averages(*(sums - logged))
                    self.summaries.step(global_step, window, trainer.learning_rate(),
                                        window.count / (now - logged_at))
                    logged, logged_at = sums, now
                running = metrics.averages(*sums)
                if at_checkpoint or stopping:
                    self._save(epoch - 1, step, np.stack([sums, logged]))
                if stopping:
                    self._stop(stops, global_step)
            if progress.due():
                progress.show(step, running)
        _toggle_profiler(self.summaries, config.profile_range(), first_step + step)
        return running

    def _check_finite(self, sums: np.ndarray, epoch: int) -> None:
        if not self.config.stop_on_nonfinite or np.isfinite(sums[0]):
            return
        step = int(self.trainer.first_nonfinite_step.numpy())
        kept = self.checkpoints.latest() or "none was written yet"
        raise UserError(
            f"the training loss became {sums[0]} at step {step} (epoch {epoch}): training "
            f"stopped; the last good checkpoint is kept ({kept}); start a new --run_name "
            f"with a lower --learning_rate, or pass --nostop_on_nonfinite to carry on")

    def _save(self, completed_epochs: int, steps_done: int, sums: np.ndarray) -> str:
        """Checkpoints the weights with where training stands."""
        self.trainer.position.assign([completed_epochs, steps_done])
        self.trainer.carried_sums.assign(sums)
        return self.checkpoints.save(completed_epochs * self.steps_per_epoch + steps_done)

    def _stop(self, stops: StopRequests, global_step: int) -> None:
        self.summaries.flush()
        raise Interrupted(
            f"Stopped by {stops.signal.name} after step {global_step}; saved "
            f"{self.checkpoints.latest()}. Resume with: python train.py "
            f"--flagfile={os.path.join(self.workdir, run_folder.FLAGFILE)}", stops.exit_code)

    def _save_model_and_figures(self) -> None:
        """The trained model as .keras and SavedModel, and the run's figures."""
        trainer, cifar, workdir = self.trainer, self.cifar, self.write_dir
        trainer.model.save(os.path.join(workdir, run_folder.MODEL))
        trainer.model.export(os.path.join(workdir, run_folder.SAVED_MODEL), verbose=False)
        names = cifar.class_names
        sample_prediction = trainer.predict_classes(cifar.test.images[:1])[0]
        figures = {
            run_folder.ACCURACY_PLOT: plots.curves(self.history, "accuracy"),
            run_folder.LOSS_PLOT: plots.curves(self.history, "loss"),
            run_folder.CONFUSION_PLOT: plots.confusion_matrix(trainer.confusion.result(), names),
            run_folder.PREDICTIONS_PLOT: _prediction_grid(trainer, cifar),
            run_folder.SAMPLE_PLOT: plots.sample_prediction(
                cifar.test.images[0], names[cifar.test.labels[0]], names[sample_prediction]),
        }
        for name, figure in figures.items():
            plots.save(figure, os.path.join(workdir, name))

    def _report(self, test: metrics.Averages) -> dict:
        fingerprint = self.trainer.weights_fingerprint()
        if self.chief:
            _print_test_results(test)
            print(f"Run folder: {self.workdir}")
        print(f"Weights fingerprint: {fingerprint}")
        return {"history": self.history, "test_loss": test.loss,
                "test_accuracy": test.accuracy, "test_count": test.count,
                "weights_fingerprint": fingerprint}


def _print_test_results(test: metrics.Averages) -> None:
    print(f"Test accuracy: {test.accuracy:.4f} (loss {test.loss:.4f}, {test.count} images)")


def _steps_to_next_stop(global_step: int, config: Config) -> int:
    """Steps from `global_step` to the next log, checkpoint or profile step."""
    steps = config.log_every_n_steps - global_step % config.log_every_n_steps
    every = config.checkpoint_every_n_steps
    if every:
        steps = min(steps, every - global_step % every)
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
