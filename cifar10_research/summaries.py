"""What a run writes to TensorBoard, through the standard tf.summary APIs.

A run folder holds three TensorBoard runs: `train/` and `validation/` (their
curves overlay), and the folder itself for the hyperparameters, the final test
results and the model graph.
"""

import dataclasses
import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from cifar10_research import metrics, run_folder
from cifar10_research.config import Config


class Summaries:
    def __init__(self, workdir: str):
        self._train = tf.summary.create_file_writer(os.path.join(workdir, run_folder.TRAIN_LOGS))
        self._validation = tf.summary.create_file_writer(
            os.path.join(workdir, run_folder.VALIDATION_LOGS))
        self._run = tf.summary.create_file_writer(workdir)
        self._train_logdir = os.path.join(workdir, run_folder.TRAIN_LOGS)
        self._profiling = False

    def hparams(self, config: Config) -> None:
        """The run's settings, for TensorBoard's HParams tab."""
        with self._run.as_default():
            hparams_api.hparams(dataclasses.asdict(config), trial_id=config.run_name)

    def graph(self, model, images) -> None:
        """The model's forward pass as a graph, for the Graphs tab."""
        forward = tf.function(lambda batch: model(batch, training=False))
        tf.summary.trace_on(graph=True, profiler=False)
        forward(images)
        with self._run.as_default():
            tf.summary.trace_export(name=model.name, step=0)

    def step(self, global_step: int, window: metrics.Averages, learning_rate: float,
             images_per_second: float) -> None:
        """Mean loss and accuracy of the steps since the last call, and their speed."""
        with self._train.as_default(step=global_step):
            tf.summary.scalar("loss", window.loss)
            tf.summary.scalar("accuracy", window.accuracy)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("images_per_second", images_per_second)

    def epoch(self, epoch: int, train: metrics.Averages, test: metrics.Averages,
              seconds: float) -> None:
        for writer, results in ((self._train, train), (self._validation, test)):
            with writer.as_default(step=epoch):
                tf.summary.scalar("epoch_loss", results.loss)
                tf.summary.scalar("epoch_accuracy", results.accuracy)
        with self._train.as_default(step=epoch):
            tf.summary.scalar("epoch_seconds", seconds)

    def images(self, epoch: int, predictions_png: bytes, confusion_png: bytes) -> None:
        """The test-prediction grid and the confusion matrix of this epoch."""
        with self._validation.as_default(step=epoch):
            for name, png in (("predictions", predictions_png),
                              ("confusion_matrix", confusion_png)):
                tf.summary.image(name, tf.io.decode_png(png, channels=4)[tf.newaxis])

    def histograms(self, epoch: int, variables, gradients) -> None:
        with self._train.as_default(step=epoch):
            for variable, gradient in zip(variables, gradients):
                tf.summary.histogram(f"weights/{variable.path}", variable)
                tf.summary.histogram(f"gradients/{variable.path}", gradient)

    def test_results(self, epoch: int, test: metrics.Averages) -> None:
        """Final test loss and accuracy: the metrics of the HParams tab."""
        with self._run.as_default(step=epoch):
            tf.summary.scalar("test_accuracy", test.accuracy)
            tf.summary.scalar("test_loss", test.loss)

    def start_profiler(self) -> None:
        if not self._profiling:
            tf.profiler.experimental.start(self._train_logdir)
            self._profiling = True

    def stop_profiler(self) -> None:
        """Stops a profile started by this run (not one a resumed run never began)."""
        if self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False

    def flush(self) -> None:
        for writer in (self._train, self._validation, self._run):
            writer.flush()
