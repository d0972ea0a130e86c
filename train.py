"""Trains the Keras tutorial's CIFAR-10 CNN with a custom training loop.

    python train.py --epochs=10 --batch_size=64

Writes TensorBoard logs, history, plots and the model to
<--model_dir>/<--run_name>/. `python train.py --helpfull` lists the flags;
recipes/*.flags hold named recipes for --flagfile.
"""

import os

from absl import app
from absl import logging

from cifar10_research import command  # The first of the project's imports: see command.py.
import flags
from cifar10_research import distribute, evaluation, loop, stopping


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TensorFlow logs checkpoint saves as INFO.
    config = flags.to_config()
    with stopping.signals_held():  # Threads this starts (a GPU driver's) never take them.
        distribute.configure_devices(config.num_cpu_devices, config.gpus)
    run = evaluation.evaluate_checkpoint if config.mode == "eval" else loop.train_and_evaluate
    with stopping.deferred():  # Acted on where the run can stop cleanly.
        run(config, os.path.join(config.model_dir, config.run_name))


if __name__ == "__main__":
    command.run(main)
