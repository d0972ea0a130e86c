"""--mode=eval: the test results of one checkpoint of a run."""

import os
import re

import tensorflow as tf

from cifar10_research import dataset, distribute, metrics, resume, run_folder, stopping
from cifar10_research.checkpoints import Checkpoints
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from cifar10_research.progress import print_test_results


def evaluate_checkpoint(config: Config, workdir: str, *,
                        strategy: tf.distribute.Strategy | None = None,
                        cifar: dataset.Cifar | None = None) -> dict:
    """The test results of `config.checkpoint`, or of the run's latest readable one.

    Prints them and writes them to `<workdir>/eval.json`.
    """
    prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", config.checkpoint)
    if prefix != config.checkpoint:
        raise UserError(f"--checkpoint={config.checkpoint} names one of a checkpoint's files: "
                        f"pass the checkpoint itself, {prefix}")
    if os.path.exists(os.path.join(workdir, run_folder.FLAGFILE)):
        resume.refuse_other_network(config, workdir)
    folder = resume.checkpoint_dir(workdir)
    no_checkpoint = UserError(f"{folder} holds no checkpoint: train the run first, or pass "
                              f"--checkpoint")
    if not (config.checkpoint or resume.has_checkpoint(workdir)):
        raise no_checkpoint  # Before the data is read (or downloaded).
    strategy = strategy or distribute.make_strategy(config.strategy, config.worker_timeout,
                                                    config.port_base)
    cifar = cifar or dataset.load(config.data_dir, dataset.DATASETS[config.dataset])
    learner = Learner(strategy, config, len(cifar.train) // config.batch_size)
    checkpoints = Checkpoints(learner.checkpointed(), folder, folder, config.keep_checkpoints)
    path = config.checkpoint or checkpoints.restore_latest()
    if path is None:
        raise no_checkpoint
    if config.checkpoint:
        try:
            checkpoints.restore(path)
        except (tf.errors.OpError, IndexError) as error:
            raise UserError(f"cannot read checkpoint {path} ({type(error).__name__}): pass "
                            f"a path like runs/NAME/checkpoints/ckpt-781 (no file "
                            f"extension)") from None
    stopping.check()
    with learner.averaged():
        test = learner.evaluate(cifar.test)
    results = {"checkpoint": path, **{f"test_{name}": mean for name, mean in test.means().items()},
               "test_count": int(test[metrics.COUNT]), "tta": config.tta}
    run_folder.write_json(os.path.join(workdir, run_folder.EVAL_RESULTS), results)
    print(f"Checkpoint {path}")
    print_test_results(results)
    return results
