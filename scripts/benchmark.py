"""Training speed of this loop against Keras' model.fit, in one process.

    python scripts/benchmark.py --data_dir=../shared/cifar10 [--json]

Alternates --rounds rounds of (a) the tutorial's model.fit and (b) this
codebase's training loop (TrainingLoop.train_epoch), each for --steps steps
after a warm-up, on the same model, data, batch size and optimizer, so that
the machine's changing speed hits both alike. Also measures the input
pipeline alone, evaluation, and the process's peak RSS. Without --data_dir it
uses random images of CIFAR-10's shape.
"""

import json
import statistics
import sys

from absl import app
from absl import flags
from absl import logging

from cifar10_research import benchmarking
from cifar10_research.config import Config

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
    results = benchmarking.measure(
        FLAGS.data_dir, FLAGS.rounds, FLAGS.steps, FLAGS.batch_size,
        [int(k) for k in FLAGS.steps_per_loop])
    if FLAGS.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print_table(results)


if __name__ == "__main__":
    app.run(main)
