"""What a run writes to TensorBoard, through the standard tf.summary APIs.

A run folder holds three TensorBoard runs: `train/` and `validation/`, whose
curves overlay on the same tags, and the folder itself for the
hyperparameters, the final test results and the model graph. Speed and
timing tags sit apart under `perf/`.
"""

import dataclasses
import glob
import os

import tensorflow as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import api as hparams_api

from cifar10_research import metrics, run_folder
from cifar10_research.config import COMPUTES, Config

# The HParams tab's metrics, in the order its table shows them, accuracy first:
# (group, tag, name).
_BY_ACCURACY = sorted(metrics.EVALUATION, key=lambda metric: metric != metrics.ACCURACY)
HPARAMS_METRICS = (
    *(("", f"test_{metric.name}", f"test {metric.name}") for metric in _BY_ACCURACY),
    (run_folder.VALIDATION_LOGS, "epoch_accuracy", "validation accuracy (last epoch)"),
    (run_folder.VALIDATION_LOGS, "best_epoch_accuracy", "validation accuracy (best epoch)"),
    *((run_folder.VALIDATION_LOGS, f"epoch_{metric.name}", f"validation {metric.name} (last "
       f"epoch)") for metric in _BY_ACCURACY[1:]),
)


# The tags logged at the epoch's number, not at the global step.
EPOCH_TAGS = ("epoch_", "best_epoch_", "perf/epoch_", "predictions", "confusion_matrix",
              "weights/", "gradients/")


def forget_logs_after(workdir: str, step: int, epoch: int) -> None:
    """Drops what the train and validation logs of `workdir` hold for steps after
    `step` (epochs after `epoch`), the checkpoint a run resumes from. A run that
    crashed (or was killed) after logging steps it had not checkpointed logs them
    again when it redoes them, and TensorBoard would draw both."""
    def kept(record: bytes) -> bool:
        event = event_pb2.Event.FromString(record)
        tags = [value.tag for value in event.summary.value]
        return event.step <= (epoch if tags and tags[0].startswith(EPOCH_TAGS) else step)

    for folder in (run_folder.TRAIN_LOGS, run_folder.VALIDATION_LOGS,
                   run_folder.RAW_VALIDATION_LOGS):
        for path in glob.glob(os.path.join(workdir, folder, "*tfevents*")):
            if path.endswith(".tmp"):  # A rewrite cut short; the file it rewrote is whole.
                os.remove(path)
                continue
            records = _records(path)
            keep = [record for record in records if kept(record)]
            if len(keep) < len(records):
                run_folder.write_whole(path, lambda partial: _write_records(partial, keep))


def _records(path: str) -> list[bytes]:
    """The whole records of an event file; a kill mid-write may have cut the last."""
    records = []
    try:
        for record in tf.data.TFRecordDataset(path):
            records.append(record.numpy())
    except tf.errors.DataLossError:
        pass
    return records


def _write_records(path: str, records: list[bytes]) -> None:
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


class Summaries:
    def __init__(self, workdir: str, val_data: str):
        """`val_data` says what the validation curves are measured on."""
        self._train = tf.summary.create_file_writer(os.path.join(workdir, run_folder.TRAIN_LOGS))
        self._validation = tf.summary.create_file_writer(
            os.path.join(workdir, run_folder.VALIDATION_LOGS))
        self._run = tf.summary.create_file_writer(workdir)
        self._train_logdir = os.path.join(workdir, run_folder.TRAIN_LOGS)
        self._workdir = workdir
        self._raw_validation = None  # Made when first written to: runs without EMA have none.
        self._val_data = val_data
        self._profiling = False

    def hparams(self, config: Config) -> None:
        """The settings that change what is computed, for the HParams tab, and the
        experiment that declares them and the metrics to compare runs by."""
        computed = [field for field in dataclasses.fields(config)
                    if field.metadata["kind"] == COMPUTES]
        with self._run.as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(field.name, _domain(field),
                                            description=field.metadata["help"])
                         for field in computed],
                metrics=[hparams_api.Metric(tag, group=group or None, display_name=name)
                         for group, tag, name in HPARAMS_METRICS])
            hparams_api.hparams({field.name: getattr(config, field.name) for field in computed},
                                trial_id=config.run_name)

    def graph(self, model, images) -> None:
        """The model's forward pass on a batch like `images`, as the one graph of
        the Graphs tab (a traced call would add the caller's graph beside it)."""
        forward = tf.function(lambda batch: model(batch, training=False), autograph=False)
        graph = forward.get_concrete_function(tf.TensorSpec(images.shape, images.dtype)).graph
        with self._run.as_default():
            tf.summary.graph(graph)

    def step(self, global_step: int, window: dict, learning_rate: float,
             images_per_second: float) -> None:
        """The training metrics' means over the steps since the last call
        ({name: mean}), and their speed."""
        with self._train.as_default(step=global_step):
            _means(window, metrics.TRAINING,
                   "training batches: mean of the steps since the last point")
            tf.summary.scalar("learning_rate", learning_rate,
                              description="the learning rate of the next step")
            tf.summary.scalar("perf/images_per_second", images_per_second,
                              description="training images per second since the last point")

    def epoch(self, epoch: int, global_step: int, train: dict, validation: dict,
              best_accuracy: float, seconds: float) -> None:
        """The epoch's training and validation means ({name: mean}); validation
        also at the global step, on the training curves' tags, so the two overlay."""
        with self._validation.as_default(step=global_step):
            _means(validation, metrics.EVALUATION, f"{self._val_data}, after the epoch ending here")
        with self._train.as_default(step=epoch):
            _means(train, metrics.TRAINING, "training batches: mean over the epoch", "epoch_")
            tf.summary.scalar("perf/epoch_seconds", seconds,
                              description="wall time of the epoch, its evaluation included")
        with self._validation.as_default(step=epoch):
            _means(validation, metrics.EVALUATION, self._val_data, "epoch_")
            tf.summary.scalar("best_epoch_accuracy", best_accuracy,
                              description=f"the best epoch_accuracy so far ({self._val_data})")

    def raw_validation(self, epoch: int, global_step: int, validation: dict) -> None:
        """Under --ema_decay, the validation means of the raw weights, which train,
        beside those of their average (the validation run), on the same tags."""
        if self._raw_validation is None:
            self._raw_validation = tf.summary.create_file_writer(
                os.path.join(self._workdir, run_folder.RAW_VALIDATION_LOGS))
        on = f"{self._val_data}, by the raw weights (not their moving average)"
        with self._raw_validation.as_default(step=global_step):
            _means(validation, metrics.EVALUATION, f"{on}, after the epoch ending here")
        with self._raw_validation.as_default(step=epoch):
            _means(validation, metrics.EVALUATION, on, "epoch_")

    def images(self, epoch: int, predictions_png: bytes, confusion_png: bytes) -> None:
        """The test-prediction grid and the confusion matrix of this epoch."""
        with self._validation.as_default(step=epoch):
            for name, png in (("predictions", predictions_png),
                              ("confusion_matrix", confusion_png)):
                tf.summary.image(name, tf.io.decode_png(png, channels=4)[tf.newaxis],
                                 description=f"on {self._val_data}, after the epoch")

    def histograms(self, epoch: int, variables, gradients) -> None:
        with self._train.as_default(step=epoch):
            for variable, gradient in zip(variables, gradients):
                tf.summary.histogram(f"weights/{variable.path}", variable)
                tf.summary.histogram(f"gradients/{variable.path}", gradient)

    def test_results(self, global_step: int, test: dict, count: int) -> None:
        """The final test means ({name: mean}): the HParams tab's first metrics."""
        with self._run.as_default(step=global_step):
            _means(test, metrics.EVALUATION, f"the {count} test images, after training",
                   "test_")

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
        for writer in (self._train, self._validation, self._run, self._raw_validation):
            if writer:
                writer.flush()


def _means(means: dict, measured: tuple, measured_on: str, prefix: str = "") -> None:
    """A scalar for each of the `measured` metrics that `means` holds, described
    by what it is and what it was measured on."""
    for metric in measured:
        if metric.name in means:
            tf.summary.scalar(f"{prefix}{metric.name}", means[metric.name],
                              description=f"{metric.description}, on {measured_on}")


def _domain(field: dataclasses.Field):
    """The HParams domain of a setting: its allowed names, whole numbers, or
    None (TensorBoard infers a range from the runs' values)."""
    if field.metadata["choices"]:
        return hparams_api.Discrete(list(field.metadata["choices"]))
    if isinstance(field.default, bool):
        return hparams_api.Discrete([False, True])
    if isinstance(field.default, int):
        return hparams_api.IntInterval(0, 2**31 - 1)
    return None
