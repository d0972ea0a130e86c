"""This codebase against Keras' model.fit, for scripts/benchmark.py.

Training speed: both train the same model on the same data, batch size and
optimizer. Time to accuracy: the Keras tutorial's fit against a recipe of this
codebase. Both in alternating rounds, so that the machine's changing speed
hits both alike, and each timed twice: by the wall clock, and by the CPU time
of the process that trains (user plus system, all its threads), which other
processes on the machine disturb less. Only ratios within one run compare.
"""

import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import data
import model
from cifar10_research import dataset, loop, run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError


def load(data_dir: str) -> dataset.Cifar:
    if data_dir:
        return dataset.load(data_dir)
    rng = np.random.default_rng(0)

    def split(rows):
        return dataset.Split(rng.integers(0, 256, (rows, 32, 32, 3), dtype=np.uint8),
                             rng.integers(0, 10, rows).astype(np.int32))
    return dataset.Cifar(split(50_000), split(10_000), dataset.CLASS_NAMES)


def tutorial_arrays(split: dataset.Split) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's inputs: images as [0,1] floats, one-hot labels."""
    return (np.asarray(data.preprocessing()(split.images)),
            keras.utils.to_categorical(split.labels, split.num_classes))


def tutorial_model() -> keras.Model:
    """The tutorial's CNN, compiled as it compiles it: its softmax, the loss of
    its probabilities."""
    network = keras.Sequential([model.simple_cnn(), keras.layers.Softmax()])
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                    metrics=["accuracy"])
    return network


def rates(images: int, work) -> tuple[float, float]:
    """Images a second of `work()`, which handles `images`: (by the wall clock,
    by this process's CPU time)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


class KerasFit:
    """The tutorial's way: compile, then fit on [0,1] float arrays and one-hot labels."""

    def __init__(self, split: dataset.Split, steps: int, batch_size: int):
        rows = steps * batch_size
        self.images, self.labels = tutorial_arrays(
            dataset.Split(split.images[:rows], split.labels[:rows]))
        self.batch_size = batch_size
        self.model = tutorial_model()
        self.model.fit(self.images[:5 * batch_size], self.labels[:5 * batch_size],
                       batch_size=batch_size, epochs=1, verbose=0)  # Warm-up: traces fit.

    def images_per_second(self) -> tuple[float, float]:
        """(by wall time, by CPU time) of one epoch."""
        return rates(len(self.images), lambda: self.model.fit(
            self.images, self.labels, batch_size=self.batch_size, epochs=1, verbose=0))


class CustomLoop:
    """This codebase's epoch loop, with its step summaries, on a training set cut
    to `steps` batches: each call trains one more epoch."""

    def __init__(self, cifar: dataset.Cifar, steps: int, config: Config):
        rows = steps * config.batch_size
        self.cifar = dataset.Cifar(
            dataset.Split(cifar.train.images[:rows], cifar.train.labels[:rows]), cifar.test,
            cifar.class_names)
        self.workdir = tempfile.TemporaryDirectory(prefix="benchmark-")  # Removed at exit.
        self.loop = loop.TrainingLoop(config, self.workdir.name,
                                      tf.distribute.OneDeviceStrategy("/cpu:0"), self.cifar)
        self.rows = rows
        self.images_per_second()  # Warm-up: traces the step.

    def images_per_second(self) -> tuple[float, float]:
        """(by wall time, by CPU time) of one epoch."""
        return rates(self.rows, self.loop.train_epoch)

    def eval_images_per_second(self) -> float:
        self.loop.learner.evaluate(self.cifar.test)  # Warm-up: traces evaluation.
        start = time.perf_counter()
        self.loop.learner.evaluate(self.cifar.test)
        return len(self.cifar.test) / (time.perf_counter() - start)


def pipeline_images_per_second(split: dataset.Split, batch_size: int) -> float:
    """A full epoch of the training input pipeline, with nothing consuming it."""
    batches = 0
    start = time.perf_counter()
    for _ in data.train_dataset(split, batch_size, seed=0, epoch=1):
        batches += 1
    return batches * batch_size / (time.perf_counter() - start)


def measure(data_dir: str, rounds: int, steps: int, batch_size: int,
            steps_per_loop: list[int]) -> dict:
    """The figures of alternating rounds of model.fit and this loop (with each of
    `steps_per_loop`; the first is the one compared), as one dict."""
    cifar = load(data_dir)
    keras.utils.set_random_seed(0)
    fit = KerasFit(cifar.train, steps, batch_size)
    # No mid-epoch checkpoints, which model.fit does not write either.
    loops = {k: CustomLoop(cifar, steps, Config(
        batch_size=batch_size, steps_per_loop=k, checkpoint_every_n_steps=0))
        for k in steps_per_loop}
    fit_rates, loop_rates = [], {k: [] for k in loops}  # (wall, CPU) of each round.
    for _ in range(rounds):
        fit_rates.append(fit.images_per_second())
        for k, custom_loop in loops.items():
            loop_rates[k].append(custom_loop.images_per_second())
    compared = steps_per_loop[0]
    fit_wall, fit_cpu = zip(*fit_rates)
    train_wall, train_cpu = zip(*loop_rates[compared])
    ratios = [ours / theirs for ours, theirs in zip(train_wall, fit_wall)]
    cpu_ratios = [ours / theirs for ours, theirs in zip(train_cpu, fit_cpu)]
    train_median = statistics.median(train_wall)
    pipeline = pipeline_images_per_second(cifar.train, batch_size)
    return {
        "data": data_dir or "random images", "batch_size": batch_size,
        "steps_per_round": steps, "steps_per_loop": compared,
        "fit_images_per_s": list(fit_wall), "train_images_per_s": list(train_wall),
        "fit_cpu_images_per_s": list(fit_cpu), "train_cpu_images_per_s": list(train_cpu),
        "train_vs_fit_ratios": ratios, "train_vs_fit_cpu_ratios": cpu_ratios,
        "other_steps_per_loop_images_per_s": {
            k: [wall for wall, _ in measured] for k, measured in loop_rates.items()
            if k != compared},
        "fit_median_images_per_s": statistics.median(fit_wall),
        "train_median_images_per_s": train_median,
        "train_vs_fit_ratio": statistics.median(ratios),
        "train_vs_fit_cpu_ratio": statistics.median(cpu_ratios),
        "pipeline_images_per_s": pipeline,
        "pipeline_vs_train_ratio": pipeline / train_median,
        "eval_images_per_s": loops[compared].eval_images_per_second(),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def tutorial_fit(cifar: dataset.Cifar, epochs: int,
                 batch_size: int) -> tuple[float, float, float]:
    """The Keras tutorial as it is written: model.fit on the whole training set,
    validating on the test set after each epoch. Returns (seconds of the fit
    call, its CPU seconds, final test accuracy)."""
    images, labels = tutorial_arrays(cifar.train)
    network = tutorial_model()
    start, cpu = time.perf_counter(), time.process_time()
    history = network.fit(images, labels, batch_size=batch_size, epochs=epochs, verbose=0,
                          validation_data=tutorial_arrays(cifar.test))
    return (time.perf_counter() - start, time.process_time() - cpu,
            history.history["val_accuracy"][-1])


def recipe_run(recipe: str, data_dir: str, workdir: str) -> tuple[float, float, float, float]:
    """`python -m train --flagfile=<recipe>` as a user runs it, in a process of its own.

    Returns (seconds of training: the run's epoch times, per-epoch evaluation
    included, as history.json records them; its CPU seconds, likewise; seconds
    of the whole command; its test accuracy)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "train", f"--flagfile={recipe}", f"--data_dir={data_dir}",
               f"--model_dir={os.path.dirname(workdir)}", f"--run_name={os.path.basename(workdir)}"]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode:
        raise UserError(f"{shlex.join(command)} failed: {completed.stderr.strip()[-500:]}")
    command_seconds = time.perf_counter() - start
    history = run_folder.read_history(workdir)
    return (sum(history[run_folder.SECONDS]), sum(history[run_folder.CPU_SECONDS]),
            command_seconds, run_folder.read_results(workdir)["test_accuracy"])


def time_to_accuracy(data_dir: str, recipe: str, rounds: int, fit_epochs: int = 10,
                     fit_batch_size: int = 64) -> dict:
    """Alternating rounds of the tutorial's model.fit and of `recipe`: the seconds
    each trained and the test accuracy each reached, and the median ratio of
    the fit's seconds to the recipe's, by the wall clock and by CPU time (the
    machine's speed drifts between minutes: only ratios within a round compare)."""
    cifar = dataset.load(data_dir)
    keras.utils.set_random_seed(0)
    figures = {key: [] for key in ("fit_seconds", "fit_cpu_seconds", "fit_test_accuracy",
                                   "recipe_seconds", "recipe_cpu_seconds",
                                   "recipe_command_seconds", "recipe_test_accuracy")}
    with tempfile.TemporaryDirectory(prefix="time-to-accuracy-") as root:
        for round_index in range(rounds):
            fit = tutorial_fit(cifar, fit_epochs, fit_batch_size)
            recipe_figures = recipe_run(recipe, data_dir, os.path.join(root, f"round{round_index}"))
            for key, value in zip(figures, (*fit, *recipe_figures)):
                figures[key].append(value)
    ratios = {clock: [fit / ours for fit, ours in zip(figures[f"fit_{clock}"],
                                                      figures[f"recipe_{clock}"])]
              for clock in ("seconds", "cpu_seconds")}
    return {"data": data_dir, "recipe": recipe, "fit_epochs": fit_epochs,
            "fit_batch_size": fit_batch_size, **figures,
            "time_to_accuracy_ratios": ratios["seconds"],
            "time_to_accuracy_ratio": statistics.median(ratios["seconds"]),
            "time_to_accuracy_cpu_ratios": ratios["cpu_seconds"],
            "time_to_accuracy_cpu_ratio": statistics.median(ratios["cpu_seconds"])}
