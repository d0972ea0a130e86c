"""Training speed of this loop against Keras' model.fit, in one process.

    python scripts/benchmark.py --data_dir=../shared/cifar10 [--json]

Alternates --rounds rounds of (a) the tutorial's model.fit and (b) this
codebase's training loop (TrainingRun.train_epoch), each for --steps steps
after a warm-up, on the same model, data, batch size and optimizer, so that
the machine's changing speed hits both alike. Also measures the input
pipeline alone, evaluation, and the process's peak RSS. Without --data_dir it
uses random images of CIFAR-10's shape.
"""

import json
import resource
import statistics
import sys
import tempfile
import time

import quiet

quiet.import_tensorflow_quietly()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import data  # noqa: E402
import model as model_lib  # noqa: E402
import trainer  # noqa: E402
from config import Config  # noqa: E402
from progress import EpochProgress  # noqa: E402
from stopping import StopRequests  # noqa: E402

flags.DEFINE_string("data_dir", "", "CIFAR-10 to measure on (default: random images).")
flags.DEFINE_integer("rounds", 5, "Alternating rounds of model.fit and this loop.", lower_bound=1)
flags.DEFINE_integer("steps", 300, "Training steps timed in each round.", lower_bound=10)
flags.DEFINE_integer("batch_size", 64, "Batch size of both.", lower_bound=1)
flags.DEFINE_list(
    "steps_per_loop", [str(Config.steps_per_loop)],
    "This loop's --steps_per_loop; several values are measured side by side, and the "
    "first is the one compared with model.fit.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
FLAGS = flags.FLAGS


def load(data_dir: str) -> data.Cifar10:
    if data_dir:
        return data.load_cifar10(data_dir)
    rng = np.random.default_rng(0)

    def split(rows):
        return data.Split(rng.integers(0, 256, (rows, 32, 32, 3), dtype=np.uint8),
                          rng.integers(0, 10, rows).astype(np.int32))
    return data.Cifar10(split(50_000), split(10_000), data.CLASS_NAMES)


class KerasFit:
    """The tutorial's way: compile, then fit on [0,1] float arrays and one-hot labels."""

    def __init__(self, split: data.Split, steps: int, batch_size: int):
        rows = steps * batch_size
        self.images = split.images[:rows].astype(np.float32) / 255.0
        self.labels = keras.utils.to_categorical(split.labels[:rows], data.NUM_CLASSES)
        self.batch_size = batch_size
        self.model = model_lib.simple_cnn()
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
    """This codebase's epoch loop on a training set cut to `steps` batches."""

    def __init__(self, cifar: data.Cifar10, steps: int, config: Config):
        rows = steps * config.batch_size
        self.cifar = data.Cifar10(data.Split(cifar.train.images[:rows], cifar.train.labels[:rows]),
                                  cifar.test, cifar.class_names)
        self.workdir = tempfile.TemporaryDirectory(prefix="benchmark-")  # Removed at exit.
        self.run = trainer.TrainingRun(config, self.workdir.name, self.workdir.name,
                                       tf.distribute.OneDeviceStrategy("/cpu:0"), True,
                                       self.cifar)
        self.rows, self.epoch = rows, 0
        self.images_per_second()  # Warm-up: traces the step.

    def images_per_second(self) -> float:
        self.epoch += 1
        progress = EpochProgress(self.epoch, self.epoch, 1, 1, enabled=False)
        start = time.perf_counter()
        with StopRequests() as stops:
            self.run.train_epoch(self.epoch, 0, stops, progress)
        return self.rows / (time.perf_counter() - start)

    def eval_images_per_second(self) -> float:
        self.run.trainer.evaluate(self.cifar.test)  # Warm-up: traces evaluation.
        start = time.perf_counter()
        self.run.trainer.evaluate(self.cifar.test)
        return len(self.cifar.test) / (time.perf_counter() - start)


def pipeline_images_per_second(split: data.Split, batch_size: int) -> float:
    """A full epoch of the training input pipeline, with nothing consuming it."""
    batches = 0
    start = time.perf_counter()
    for _ in data.train_dataset(split, batch_size, seed=0, epoch=1):
        batches += 1
    return batches * batch_size / (time.perf_counter() - start)


def measure() -> dict:
    cifar = load(FLAGS.data_dir)
    keras.utils.set_random_seed(0)
    fit = KerasFit(cifar.train, FLAGS.steps, FLAGS.batch_size)
    # No mid-epoch checkpoints, which model.fit does not write either.
    loops = {int(k): CustomLoop(cifar, FLAGS.steps,
                                Config(batch_size=FLAGS.batch_size, steps_per_loop=int(k),
                                       checkpoint_every_n_steps=0))
             for k in FLAGS.steps_per_loop}
    fit_rates, loop_rates = [], {k: [] for k in loops}
    for _ in range(FLAGS.rounds):
        fit_rates.append(fit.images_per_second())
        for k, loop in loops.items():
            loop_rates[k].append(loop.images_per_second())
    compared = int(FLAGS.steps_per_loop[0])
    ratios = [ours / theirs for ours, theirs in zip(loop_rates[compared], fit_rates)]
    train_median = statistics.median(loop_rates[compared])
    pipeline = pipeline_images_per_second(cifar.train, FLAGS.batch_size)
    return {
        "data": FLAGS.data_dir or "random images", "batch_size": FLAGS.batch_size,
        "steps_per_round": FLAGS.steps, "steps_per_loop": compared,
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


def print_table(results: dict) -> None:
    print(f"Data: {results['data']}; batch {results['batch_size']}; "
          f"{results['steps_per_round']} steps a round; steps_per_loop "
          f"{results['steps_per_loop']}")
    others = results["other_steps_per_loop_images_per_s"]
    print(f"{'round':>6} {'model.fit img/s':>16} {'this loop img/s':>16} {'ratio':>7}"
          + "".join(f" {f'loop, K={k}':>12}" for k in others))
    columns = zip(results["fit_images_per_s"], results["train_images_per_s"],
                  results["train_vs_fit_ratios"], *others.values())
    for index, (fit, ours, ratio, *other) in enumerate(columns, 1):
        print(f"{index:>6} {fit:>16,.0f} {ours:>16,.0f} {ratio:>7.3f}"
              + "".join(f" {rate:>12,.0f}" for rate in other))
    print(f"{'median':>6} {results['fit_median_images_per_s']:>16,.0f} "
          f"{results['train_median_images_per_s']:>16,.0f} {results['train_vs_fit_ratio']:>7.3f}"
          + "".join(f" {statistics.median(rates):>12,.0f}" for rates in others.values()))
    print(f"Input pipeline alone: {results['pipeline_images_per_s']:,.0f} images/s "
          f"({results['pipeline_vs_train_ratio']:.1f}x training)")
    print(f"Evaluation: {results['eval_images_per_s']:,.0f} images/s")
    print(f"Peak RSS: {results['peak_rss_gib']:.2f} GiB")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow logs checkpoint saves as INFO.
    results = measure()
    if FLAGS.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print_table(results)


if __name__ == "__main__":
    app.run(main)
