"""The outer loop (orbit's Controller): epochs, and when to log, checkpoint, profile and stop.

`train_and_evaluate(config, workdir)` is what train.py and the tests call.
The learner's `step` is the one step counter: the epoch, the position in it
and every periodic decision are derived from it, and it is checkpointed with
the weights, so a resumed run continues exactly.
"""

import functools
import os
import time

import keras
import tensorflow as tf

import data
from cifar10_research import (checkpoints, dataset, distribute, divergence, finish, metrics,
                              periodic, progress, resume, run_folder, stopping)
from cifar10_research.checkpoints import Checkpoints, repair_checkpoint_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from cifar10_research.progress import EpochClock, EpochProgress
from cifar10_research.summaries import Summaries, forget_logs_after


def train_and_evaluate(config: Config, workdir: str, *,
                       strategy: tf.distribute.Strategy | None = None,
                       cifar: dataset.Cifar | None = None) -> dict:
    """Trains, evaluates after every epoch and fills the run folder `workdir`.

    A run folder that holds checkpoints is resumed from the latest one (its
    index rebuilt if lost); a finished one reports its saved results. `strategy`
    and `cifar` default to those the config names; tests pass their own. Returns
    the history, the test results and the weights' fingerprint. Every worker runs
    this; only the chief writes into `workdir`, the others into a temporary folder
    removed at the end.

    SIGTERM and Ctrl-C stop it cleanly (see `stopping`): at the next step, after
    a checkpoint, or between the files it reads or writes; it then raises
    Interrupted. So does the loss of a peer worker.
    """
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    with stopping.deferred():
        strategy = strategy or distribute.make_strategy(config.strategy, config.worker_timeout,
                                                        config.port_base)
        distribute.refuse_misfits(config.batch_size, config.jit_compile, strategy)
        with distribute.peer_loss_reported(strategy), distribute.own_folder(
                strategy, workdir) as write_dir:
            cifar = cifar or dataset.load(config.data_dir, dataset.DATASETS[config.dataset])
            training = TrainingLoop(config, workdir, strategy, cifar, write_dir)  # Its checks.
            run_folder.prepare(write_dir)
            with run_folder.locked(write_dir):
                repair_checkpoint_folder(resume.checkpoint_dir(write_dir))
                return training.run()


class TrainingLoop:
    """One run's epochs over a Learner, and what they write into the run folder.

    `write_dir` is where this process writes: the run folder `workdir` on the
    chief, a folder of its own on the other workers of a multi-worker run.
    Making one checks the settings and writes nothing; `write_dir` must exist
    when it runs (`train_and_evaluate` makes it).
    """

    def __init__(self, config: Config, workdir: str, strategy: tf.distribute.Strategy,
                 cifar: dataset.Cifar, write_dir: str | None = None):
        self.train_split, self.validation = cifar.held_out(config.validation_split)
        self.steps_per_epoch = len(self.train_split) // config.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(f"--batch_size={config.batch_size} is larger than the "
                            f"{len(self.train_split)} training images: pick a smaller one")
        resume.refuse_changed_settings(config, workdir)
        self.config, self.workdir, self.cifar = config, workdir, cifar
        self.write_dir = write_dir or workdir
        self.chief = self.write_dir == workdir
        keras.utils.set_random_seed(config.seed)
        self.learner = Learner(strategy, config, self.steps_per_epoch)
        # Every worker resumes from the chief's checkpoints (a shared folder
        # on several machines); each saves into its own write_dir.
        self.checkpoints = Checkpoints(self.learner.checkpointed(),
                                       resume.checkpoint_dir(workdir),
                                       resume.checkpoint_dir(self.write_dir),
                                       config.keep_checkpoints)
        # Where the epoch in progress stands, checkpointed with it: its training
        # sums by metric so far ("sums") and at its last log step ("logged"), and
        # its seconds (wall and CPU) so far. A run resumed mid-epoch still reports
        # the whole epoch.
        self.epoch_state, self.clock = {}, EpochClock()
        self.val_data = (f"{len(self.validation):,} held-out training images"
                         if config.validation_split else run_folder.TEST_SET)
        self.history = run_folder.empty_history(self.val_data)
        self.stop_vote = distribute.StopVote(strategy)
        self.log_every = periodic.Every(config.log_every_n_steps)
        self.checkpoint_every = periodic.Every(config.checkpoint_every_n_steps)
        self.profile_start, self.profile_stop = periodic.profile_window(
            config.profile_range(), config.epochs * self.steps_per_epoch)

    @functools.cached_property
    def summaries(self) -> Summaries:
        """Made at first use, after the start-up checks: a refused start adds no
        event files to the run folder."""
        return Summaries(self.write_dir, self.val_data)

    def step(self) -> int:
        """Training steps taken so far, over all epochs."""
        return int(self.learner.step.numpy())

    def epochs_done(self) -> int:
        return self.step() // self.steps_per_epoch

    def run(self) -> dict:
        """Trains the epochs not done yet, then evaluates the test set once and
        writes the model, figures and results; returns the results."""
        self._start_or_resume()
        # The chief's results, which every worker reads: all must agree on
        # whether to evaluate, as an evaluation is a collective op.
        results = run_folder.read_results(self.workdir)
        if self.epochs_done() >= self.config.epochs and results:
            print(f"{self.workdir} has finished its {self.epochs_done()} epochs; its results:")
            return self._report(results)
        if self.chief:
            progress.print_validation_plan(self.val_data, self.config.validation_split)
        while (epoch := self.epochs_done() + 1) <= self.config.epochs:
            self._epoch(epoch)
            if epoch < self.config.epochs and (stops := self.stop_vote(stopping.requested())):
                self._stop(stops)
        return self._report(self._finish())

    def _start_or_resume(self) -> None:
        """Restores the latest checkpoint, if any, and (re)writes the run's flags,
        hparams and graph."""
        path = self.checkpoints.restore_latest()
        self.epoch_state = checkpoints.state(path) if path else {}
        if path is None:
            run_folder.refuse_stale(self.workdir)
            self.learner.adapt(self.train_split)
            if self.chief:
                self.learner.model.summary()
        else:
            saved_step = self.step()
            self.learner.step.assign(resume.resumed_step(
                self.config, self.workdir, path, saved_step, len(self.train_split)))
            epochs_done, steps_done = divmod(self.step(), self.steps_per_epoch)
            forget_logs_after(self.write_dir, saved_step, epochs_done)
            self.history = {**run_folder.read_history(self.workdir, epochs=epochs_done),
                            "val_data": self.val_data}
            print(f"Resuming {path}: epoch {epochs_done + 1}, after step {steps_done} of "
                  f"{self.steps_per_epoch}")
        run_folder.write_text(os.path.join(self.write_dir, run_folder.FLAGFILE),
                              self.config.to_flagfile())
        self.summaries.hparams(self.config)
        self.summaries.graph(self.learner.model,
                             self.learner.preprocess(self.cifar.test.images[:1]))

    def _epoch(self, epoch: int) -> None:
        """Trains (the rest of) an epoch, validates, logs and checkpoints it."""
        resumed = self.epoch_state if self.step() % self.steps_per_epoch else {}
        self.clock = EpochClock(resumed)
        epoch_progress = EpochProgress(epoch, self.config.epochs, self.steps_per_epoch,
                                       self.config.batch_size, enabled=self.chief)
        train = self.train_epoch(epoch_progress)
        validation = self._validate(epoch)
        times = self.clock.seconds()
        means = {**train, **{f"val_{name}": mean for name, mean in validation.items()}}
        epoch_values = {key: means.get(key) for key in run_folder.METRIC_KEYS}
        for key, value in {**epoch_values, **times}.items():
            self.history[key].append(value)
        self.summaries.epoch(epoch, self.step(), train, validation,
                             run_folder.best_epoch(self.history)[1], times[run_folder.SECONDS])
        self.summaries.flush()
        # History first: after a crash in between, resuming redoes this epoch
        # and truncates the history to the checkpoint's epochs.
        run_folder.write_history(self.write_dir, self.history)
        self._save(metrics.Sums(), metrics.Sums())
        epoch_progress.finish(epoch_values, times[run_folder.SECONDS])

    def _validate(self, epoch: int) -> dict:
        """The validation means of the weights a run evaluates and exports (their
        average under --ema_decay), and the epoch's figures; under --ema_decay,
        the raw weights' means too, for TensorBoard."""
        if self.learner.average:
            self.summaries.raw_validation(epoch, self.step(),
                                          self.learner.evaluate(self.validation).means())
        with self.learner.averaged():
            validation = self.learner.evaluate(self.validation).means()
            finish.write_epoch_figures(self.learner, self.validation, self.train_split,
                                       self.cifar.class_names, self.summaries, epoch,
                                       self.config.histograms)
        return validation

    def train_epoch(self, epoch_progress: EpochProgress | None = None) -> dict:
        """Trains from the current step to the end of its epoch; returns the
        epoch's training means, {name: mean}.

        Steps run in calls of up to --steps_per_loop, each ending at the next
        log, checkpoint or profiler step. Only there, at a stop request and at
        the epoch's end are the totals read: under multi-worker a read is a
        collective op, so every worker must read at the same steps.
        """
        step = self.step()
        epoch, steps_done = divmod(step, self.steps_per_epoch)
        end = (epoch + 1) * self.steps_per_epoch
        self.learner.train_totals.reset()
        if steps_done:  # Resumed: the sums the checkpoint holds, by name.
            carried, logged = (metrics.Sums(self.epoch_state.get(key, {}))
                               for key in ("sums", "logged"))
        else:
            carried = logged = metrics.Sums.zero(metrics.TRAINING)
        running = carried.means()
        iterator = iter(self._batches(epoch + 1, steps_done))
        logged_at = time.perf_counter()
        while step < end:
            self._toggle_profiler(step)
            self.learner.train_steps(iterator, tf.constant(self._steps_in_next_call(step, end)))
            step = self.step()
            at_checkpoint = step < end and self.checkpoint_every.due(step)
            stops = self.stop_vote(stopping.requested()) if step < end else {}
            if self.log_every.due(step) or at_checkpoint or stops or step == end:
                sums = self.learner.train_totals.sums() + carried
                if self.config.stop_on_nonfinite:
                    divergence.refuse_nonfinite_loss(sums, self.learner, epoch + 1,
                                                     self.checkpoints)
                if self.log_every.due(step):
                    now = time.perf_counter()
                    window = sums - logged  # The steps since the last log step.
                    self.summaries.step(step, window.means(), self.learner.learning_rate(),
                                        window[metrics.COUNT] / (now - logged_at))
                    logged, logged_at = sums, now
                running = sums.means()
                if at_checkpoint or stops:
                    self._save(sums, logged)
                if stops:
                    self._stop(stops)
            if epoch_progress and epoch_progress.due():
                epoch_progress.show(step - epoch * self.steps_per_epoch, running)
        self._toggle_profiler(step)
        return running

    def _batches(self, epoch: int, skip_batches: int):
        return self.learner.distribute_dataset(data.train_dataset(
            self.train_split, self.config.batch_size, self.config.seed, epoch,
            skip_batches=skip_batches, augmentation=self.config.augment,
            mixing=self.config.mix, mix_alpha=self.config.mix_alpha))

    def _steps_in_next_call(self, step: int, end: int) -> int:
        """At most --steps_per_loop, and none past the epoch's end or due work."""
        return min(self.config.steps_per_loop, end - step,
                   *(work.steps_to_next(step) for work in (
                       self.log_every, self.checkpoint_every, self.profile_start,
                       self.profile_stop)))

    def _toggle_profiler(self, step: int) -> None:
        """Profiles steps START to END: starts after step START-1, stops after END."""
        if self.profile_start.due(step):
            self.summaries.start_profiler()
        elif self.profile_stop.due(step):
            self.summaries.stop_profiler()

    def _check_weights(self) -> None:
        if self.config.stop_on_nonfinite:
            divergence.refuse_nonfinite_weights(self.learner, self.step(), self.checkpoints)

    def _save(self, sums: metrics.Sums, logged: metrics.Sums) -> str:
        """Checkpoints the weights, the step, and the epoch's sums (now and at the
        last log step) and seconds (wall and CPU) so far."""
        self._check_weights()
        return self.checkpoints.save(self.step(),
                                     {"sums": sums, "logged": logged, **self.clock.seconds()})

    def _stop(self, stops: dict) -> None:
        """Ends the run after the checkpoint just saved (see resume.stopped)."""
        self.summaries.flush()
        raise resume.stopped(stops, self.step(), self.checkpoints.latest(), self.workdir)

    def _finish(self) -> dict:
        """Evaluates the test set, the one time a run does, and writes the model,
        the figures and, last, results.json; returns the results."""
        self._check_weights()
        with self.learner.averaged():
            test = self.learner.evaluate(self.cifar.test)  # The last collective op of a run.
            stopping.check()
            self.summaries.test_results(self.step(), test.means(), int(test[metrics.COUNT]))
            self.summaries.flush()
            finish.save_model_and_figures(self.learner, self.cifar.test,
                                          self.cifar.class_names, self.history, self.write_dir)
            results = finish.results(test, self.history, self.config.tta,
                                     self.learner.weights_fingerprint())
        run_folder.write_json(os.path.join(self.write_dir, run_folder.RESULTS), results)
        return results

    def _report(self, results: dict) -> dict:
        """Prints the results, the test set's last, and returns them with the history."""
        if self.chief:
            progress.print_results(results, self.workdir)
        print(f"Weights fingerprint: {results['weights_fingerprint']}")
        return {"history": self.history, **results}
