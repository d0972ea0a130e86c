"""Trains the Keras tutorial's CIFAR-10 CNN with a custom training loop.

    python train.py --epochs=10 --batch_size=64

Writes TensorBoard logs, history, plots and the model to
<--model_dir>/<--run_name>/. `python train.py --helpfull` lists the flags.
"""

import os
import sys

import quiet

quiet.import_tensorflow_quietly()

from absl import app  # noqa: E402
from absl import logging  # noqa: E402

import distribute  # noqa: E402
import flags  # noqa: E402
import trainer  # noqa: E402
from errors import Interrupted, reported_in_one_line  # noqa: E402


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = flags.to_config()
    logging.set_verbosity(logging.WARNING)  # TensorFlow logs checkpoint saves as INFO.
    try:
        with reported_in_one_line():
            distribute.configure_devices(config.num_cpu_devices, config.gpus)
            run = (trainer.evaluate_checkpoint if config.mode == "eval"
                   else trainer.train_and_evaluate)
            run(config, os.path.join(config.model_dir, config.run_name))
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)


if __name__ == "__main__":
    app.run(main)
