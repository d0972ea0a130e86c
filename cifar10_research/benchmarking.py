"""Training speed of this loop against Keras' model.fit, for scripts/benchmark.py.

Both train the same model on the same data, batch size and optimizer, in
alternating rounds, so that the machine's changing speed hits both alike.
"""

import resource
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import data
import model
from cifar10_research import dataset, loop
from cifar10_research.config import Config


def load(data_dir: str) -> dataset.Cifar10:
    if data_dir:
        return dataset.load_cifar10(data_dir)
    rng = np.random.default_rng(0)

    def split(rows):
        return dataset.Split(rng.integers(0, 256, (rows, 32, 32, 3), dtype=np.uint8),
                             rng.integers(0, 10, rows).astype(np.int32))
    return dataset.Cifar10(split(50_000), split(10_000), dataset.CLASS_NAMES)


class KerasFit:
    """The tutorial's way: compile, then fit on [0,1] float arrays and one-hot labels."""

    def __init__(self, split: dataset.Split, steps: int, batch_size: int):
        rows = steps * batch_size
        self.images = split.images[:rows].astype(np.float32) / 255.0
        self.labels = keras.utils.to_categorical(split.labels[:rows], dataset.NUM_CLASSES)
        self.batch_size = batch_size
        self.model = model.simple_cnn()
        self.model.compile(optimizer=keras.optimizers.Adam(1e-3),
                           loss="categorical_crossentropy", metrics=["accuracy"])
        self.model.fit(self.images[:5 * batch_size], self.labels[:5 * batch_size],
                       batch_size=batch_size, epochs=1, verbose=0)  # Warm-up: traces fit.

    def images_per_second(self) -> float:
        start = time.perf_counter()
        self.model.fit(self.images, self.labels, batch_size=self.batch_size, epochs=1,
                       verbose=0)
        return len(self.images) / (time.perf_counter() - start)


class CustomLoop:
    """This codebase's epoch loop, with its step summaries, on a training set cut
    to `steps` batches: each call trains one more epoch."""

    def __init__(self, cifar: dataset.Cifar10, steps: int, config: Config):
        rows = steps * config.batch_size
        self.cifar = dataset.Cifar10(
            dataset.Split(cifar.train.images[:rows], cifar.train.labels[:rows]), cifar.test,
            cifar.class_names)
        self.workdir = tempfile.TemporaryDirectory(prefix="benchmark-")  # Removed at exit.
        self.loop = loop.TrainingLoop(config, self.workdir.name,
                                      tf.distribute.OneDeviceStrategy("/cpu:0"), self.cifar)
        self.rows = rows
        self.images_per_second()  # Warm-up: traces the step.

    def images_per_second(self) -> float:
        start = time.perf_counter()
        self.loop.train_epoch()
        return self.rows / (time.perf_counter() - start)

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
    fit_rates, loop_rates = [], {k: [] for k in loops}
    for _ in range(rounds):
        fit_rates.append(fit.images_per_second())
        for k, custom_loop in loops.items():
            loop_rates[k].append(custom_loop.images_per_second())
    compared = steps_per_loop[0]
    ratios = [ours / theirs for ours, theirs in zip(loop_rates[compared], fit_rates)]
    train_median = statistics.median(loop_rates[compared])
    pipeline = pipeline_images_per_second(cifar.train, batch_size)
    return {
        "data": data_dir or "random images", "batch_size": batch_size,
        "steps_per_round": steps, "steps_per_loop": compared,
        "fit_images_per_s": fit_rates, "train_images_per_s": loop_rates[compared],
        "train_vs_fit_ratios": ratios,
        "other_steps_per_loop_images_per_s": {
            k: rates for k, rates in loop_rates.items() if k != compared},
        "fit_median_images_per_s": statistics.median(fit_rates),
        "train_median_images_per_s": train_median,
        "train_vs_fit_ratio": statistics.median(ratios),
        "pipeline_images_per_s": pipeline,
        "pipeline_vs_train_ratio": pipeline / train_median,
        "eval_images_per_s": loops[compared].eval_images_per_second(),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
