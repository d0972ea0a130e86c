"""--mixed_precision and --jit_compile train on the CPU too."""

import numpy as np
import pytest
import tensorflow as tf

import data
import trainer
from config import Config
from errors import UserError
from tests import fake_cifar


def tiny_cifar():
    def split(rows, seed):
        images, labels = fake_cifar.images_and_labels(rows, seed)
        return data.Split(images, labels.astype(np.int32))
    return data.Cifar10(split(128, 1), split(40, 2), fake_cifar.CLASS_NAMES)


def train(tmp_path, strategy, **options):
    config = Config(epochs=2, batch_size=16, learning_rate=3e-3, run_name="options",
                    **options)
    return trainer.train_and_evaluate(config, str(tmp_path / "run"), strategy=strategy,
                                      cifar=tiny_cifar())


@pytest.mark.parametrize("precision, compute_dtype, optimizer", [
    ("float16", "float16", "LossScaleOptimizer"),
    ("bfloat16", "bfloat16", "Adam"),
])
def test_mixed_precision_computes_in_half_and_outputs_float32(precision, compute_dtype,
                                                              optimizer):
    learner = trainer.Trainer(tf.distribute.OneDeviceStrategy("/cpu:0"),
                              Config(mixed_precision=precision), steps_per_epoch=8)
    assert learner.model.layers[0].compute_dtype == compute_dtype
    assert learner.model.layers[0].variable_dtype == "float32"
    assert learner.model.layers[-1].compute_dtype == "float32"
    assert type(learner.optimizer).__name__ == optimizer


@pytest.mark.parametrize("strategy", ["one_device", "mirrored"])
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_trains(tmp_path, strategy, precision):
    chosen = (tf.distribute.OneDeviceStrategy("/cpu:0") if strategy == "one_device"
              else tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    history = train(tmp_path, chosen, mixed_precision=precision)["history"]
    assert np.isfinite(history["loss"]).all()
    assert history["loss"][1] < history["loss"][0]


def test_jit_compile_trains(tmp_path):
    history = train(tmp_path, tf.distribute.OneDeviceStrategy("/cpu:0"),
                    jit_compile=True)["history"]
    assert history["loss"][1] < history["loss"][0]


def test_jit_compile_over_logical_cpus_is_refused(tmp_path):
    with pytest.raises(UserError, match="--jit_compile cannot mirror over logical CPU devices"):
        train(tmp_path, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), jit_compile=True)
