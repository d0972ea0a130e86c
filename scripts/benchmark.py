"""Training speed of this loop against Keras' model.fit, in one process; or the
time each takes to its accuracy.

    python scripts/benchmark.py --data_dir=../shared/cifar10 [--json]
    python scripts/benchmark.py --time_to_accuracy --rounds=2 --data_dir=../shared/cifar10
    python scripts/benchmark.py --batch_norm --model=wide_cnn --batch_size=256 [--json]

With --time_to_accuracy, alternates --rounds rounds of the Keras tutorial as
written (model.fit for --fit_epochs epochs of batch 64, validating on the test
set after each) and of `python -m train --flagfile=<--recipe>`, and reports
the seconds each trained, the test accuracy each reached, and the median ratio
of the fit's seconds to the recipe's.

With --batch_norm, alternates --rounds rounds of --steps training steps of
--model with Keras' BatchNormalization after each convolution, with this
codebase's fused BatchNorm there, and with none, and reports each round's
images/s by wall time and by the process's CPU time, and their ratios.

Otherwise, alternates --rounds rounds of (a) the tutorial's model.fit and (b) this
codebase's training loop (TrainingLoop.train_epoch), each for --steps steps
after a warm-up, on the same model, data, batch size and optimizer, so that
the machine's changing speed hits both alike. Also measures the input
pipeline alone, evaluation, and the process's peak RSS. Without --data_dir it
uses random images of CIFAR-10's shape.
"""

import json
import os
import statistics
import sys

from absl import app
from absl import flags
from absl import logging

from cifar10_research import command  # The first of the project's imports: see command.py.
import model
from cifar10_research import batch_norm_benchmark, benchmarking
from cifar10_research.config import Config
from cifar10_research.errors import UserError

flags.DEFINE_string("data_dir", "", "CIFAR-10 to measure on (default: random images).")
flags.DEFINE_integer("rounds", 5, "Alternating rounds of what is compared.", lower_bound=1)
flags.DEFINE_integer("steps", 300, "Training steps timed in each round.", lower_bound=10)
flags.DEFINE_integer("batch_size", 64, "Batch size of each.", lower_bound=1)
flags.DEFINE_list(
    "steps_per_loop", [str(Config.steps_per_loop)],
    "This loop's --steps_per_loop; several values are measured side by side, and the "
    "first is the one compared with model.fit.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.")
flags.DEFINE_bool("time_to_accuracy", False,
                  "Compare the time to accuracy of the tutorial's model.fit and --recipe.")
flags.DEFINE_string(
    "recipe", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "recipes", "fast.flags"),
    "With --time_to_accuracy: the flagfile of the recipe to time.")
flags.DEFINE_integer("fit_epochs", 10, "With --time_to_accuracy: the tutorial fit's epochs.",
                     lower_bound=1)
flags.DEFINE_bool("batch_norm", False,
                  "Compare --model with Keras' batch norm, with BatchNorm and with none.")
flags.DEFINE_enum("model", "wide_cnn", list(model.MODELS),
                  "With --batch_norm: the network, a batch norm after each convolution.")
FLAGS = flags.FLAGS


def print_table(results: dict) -> None:
    print(f"Data: {results['data']}; batch {results['batch_size']}; "
          f"{results['steps_per_round']} steps a round; steps_per_loop "
          f"{results['steps_per_loop']}")
    others = results["other_steps_per_loop_images_per_s"]
    print(f"{'round':>6} {'model.fit img/s':>16} {'this loop img/s':>16} {'ratio':>7} "
          f"{'fit CPU img/s':>14} {'loop CPU img/s':>15} {'ratio':>7}"
          + "".join(f" {f'loop, K={k}':>12}" for k in others))
    columns = zip(results["fit_images_per_s"], results["train_images_per_s"],
                  results["train_vs_fit_ratios"], results["fit_cpu_images_per_s"],
                  results["train_cpu_images_per_s"], results["train_vs_fit_cpu_ratios"],
                  *others.values())
    for index, (fit, ours, ratio, fit_cpu, ours_cpu, cpu_ratio, *other) in enumerate(columns, 1):
        print(f"{index:>6} {fit:>16,.0f} {ours:>16,.0f} {ratio:>7.3f} {fit_cpu:>14,.0f} "
              f"{ours_cpu:>15,.0f} {cpu_ratio:>7.3f}"
              + "".join(f" {rate:>12,.0f}" for rate in other))
    print(f"{'median':>6} {results['fit_median_images_per_s']:>16,.0f} "
          f"{results['train_median_images_per_s']:>16,.0f} {results['train_vs_fit_ratio']:>7.3f} "
          f"{statistics.median(results['fit_cpu_images_per_s']):>14,.0f} "
          f"{statistics.median(results['train_cpu_images_per_s']):>15,.0f} "
          f"{results['train_vs_fit_cpu_ratio']:>7.3f}"
          + "".join(f" {statistics.median(rates):>12,.0f}" for rates in others.values()))
    print(f"Input pipeline alone: {results['pipeline_images_per_s']:,.0f} images/s "
          f"({results['pipeline_vs_train_ratio']:.1f}x training)")
    print(f"Evaluation: {results['eval_images_per_s']:,.0f} images/s")
    print(f"Peak RSS: {results['peak_rss_gib']:.2f} GiB")


def print_time_to_accuracy(results: dict) -> None:
    print(f"Data: {results['data']}; the tutorial's model.fit ({results['fit_epochs']} "
          f"epochs, batch {results['fit_batch_size']}) vs {results['recipe']}")
    print(f"{'round':>6} {'fit s':>8} {'CPU s':>8} {'fit test acc':>13} {'recipe s':>9} "
          f"{'CPU s':>8} {'(whole command s)':>18} {'recipe test acc':>16} {'ratio':>6} "
          f"{'(CPU)':>6}")
    rows = zip(results["fit_seconds"], results["fit_cpu_seconds"], results["fit_test_accuracy"],
               results["recipe_seconds"], results["recipe_cpu_seconds"],
               results["recipe_command_seconds"], results["recipe_test_accuracy"],
               results["time_to_accuracy_ratios"], results["time_to_accuracy_cpu_ratios"])
    for index, (fit, fit_cpu, fit_accuracy, ours, ours_cpu, whole, accuracy, ratio,
                cpu_ratio) in enumerate(rows, 1):
        print(f"{index:>6} {fit:>8.1f} {fit_cpu:>8.1f} {fit_accuracy:>13.4f} {ours:>9.1f} "
              f"{ours_cpu:>8.1f} {whole:>18.1f} {accuracy:>16.4f} {ratio:>6.2f} "
              f"{cpu_ratio:>6.2f}")
    print(f"Time-to-accuracy ratio (fit seconds over the recipe's, median): "
          f"{results['time_to_accuracy_ratio']:.2f} by the wall clock, "
          f"{results['time_to_accuracy_cpu_ratio']:.2f} by CPU time")


def print_batch_norm(results: dict) -> None:
    print(f"Data: {results['data']}; {results['model']}, batch {results['batch_size']}, "
          f"{results['steps_per_round']} steps a round; images/s by wall and by CPU time; "
          f"load average {results['load_average_before']:.2f} before, "
          f"{results['load_average_after']:.2f} after")
    wall, cpu = results["wall_images_per_s"], results["cpu_images_per_s"]
    ratios = results["ratios"]
    print(f"{'round':>6}" + "".join(f" {name + ' wall':>11} {name + ' CPU':>11}" for name in wall)
          + "".join(f" {name.replace('_vs_', '/'):>11} {'(CPU)':>7}" for name in ratios))
    for index in range(len(wall["fused"])):
        print(f"{index + 1:>6}"
              + "".join(f" {wall[name][index]:>11,.0f} {cpu[name][index]:>11,.0f}"
                        for name in wall)
              + "".join(f" {clocks['wall'][index]:>11.3f} {clocks['cpu'][index]:>7.3f}"
                        for clocks in ratios.values()))
    print(f"{'median':>6}"
          + "".join(f" {statistics.median(wall[name]):>11,.0f} "
                    f"{statistics.median(cpu[name]):>11,.0f}" for name in wall)
          + "".join(f" {clocks['wall']:>11.3f} {clocks['cpu']:>7.3f}"
                    for clocks in results["median_ratios"].values()))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow logs checkpoint saves as INFO.
    if FLAGS.time_to_accuracy:
        if not FLAGS.data_dir:
            raise UserError("--time_to_accuracy needs --data_dir: accuracy on random "
                            "images means nothing")
        results = benchmarking.time_to_accuracy(FLAGS.data_dir, FLAGS.recipe, FLAGS.rounds,
                                                FLAGS.fit_epochs)
    elif FLAGS.batch_norm:
        results = batch_norm_benchmark.measure(FLAGS.data_dir, FLAGS.model, FLAGS.rounds,
                                               FLAGS.steps, FLAGS.batch_size)
    else:
        results = benchmarking.measure(FLAGS.data_dir, FLAGS.rounds, FLAGS.steps,
                                       FLAGS.batch_size,
                                       [int(k) for k in FLAGS.steps_per_loop])
    if FLAGS.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    elif FLAGS.time_to_accuracy:
        print_time_to_accuracy(results)
    elif FLAGS.batch_norm:
        print_batch_norm(results)
    else:
        print_table(results)


if __name__ == "__main__":
    command.run(main, stopped="")
