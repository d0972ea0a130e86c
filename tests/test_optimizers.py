"""Optimizers by name, and what --weight_decay means for each."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
from cifar10_research import optimizers, schedules
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests.conftest import one_device, tiny_split, two_replicas

BASE = 0.1


def test_the_optimizer_steps_with_the_rate_of_the_runs_step():
    schedule = schedules.WarmupSchedule("constant", BASE, 100, 10)
    step = tf.Variable(0, dtype=tf.int64)
    optimizer = optimizers.make_optimizer("adam", lambda: schedule(step))
    weight = keras.Variable(1.0)
    optimizer.build([weight])
    for _ in range(3):
        optimizer.apply_gradients([(tf.constant(1.0), weight)])
        step.assign_add(1)
    assert float(optimizer.learning_rate) == pytest.approx(BASE * 0.3)
    step.assign(5)  # Not the optimizer's own count of applied updates (3): the run's step.
    assert float(optimizer.learning_rate) == pytest.approx(BASE * 0.5)


def test_adam_with_weight_decay_is_adamw_as_before_the_optimizer_setting():
    assert type(optimizers.make_optimizer("adam", BASE)) is keras.optimizers.Adam
    for name in ("adam", "adamw"):
        adamw = optimizers.make_optimizer(name, BASE, weight_decay=1e-4)
        assert type(adamw) is keras.optimizers.AdamW, name
        assert adamw.weight_decay == pytest.approx(1e-4)
        assert float(adamw.learning_rate) == pytest.approx(BASE)
    sgd = optimizers.make_optimizer("sgd", BASE, weight_decay=1e-4, momentum=0.85,
                                    nesterov=True)
    assert type(sgd) is keras.optimizers.SGD and sgd.nesterov and sgd.weight_decay is None
    assert sgd.momentum == pytest.approx(0.85)


def sgd_learner(strategy, weight_decay, **settings):
    keras.utils.set_random_seed(0)
    return Learner(strategy, Config(batch_size=16, learning_rate=0.05, optimizer="sgd",
                                    weight_decay=weight_decay, **settings), steps_per_epoch=4)


def one_step(learner, split):
    batches = data.train_dataset(split, 16, seed=0, epoch=1)
    learner.train_steps(iter(learner.distribute_dataset(batches)), tf.constant(1))
    return learner.model.trainable_variables


@pytest.mark.parametrize("network", ["simple_cnn", "wide_cnn"])
def test_sgd_weight_decay_is_the_l2_penalty_of_kernels_only(network):
    """One step from the same weights, with and without the penalty: its gradient
    weight_decay * w moves every kernel by a further learning_rate * weight_decay
    * w (the first momentum step is plain), and leaves biases, gamma and beta."""
    split = tiny_split(16, seed=4)
    plain = sgd_learner(one_device(), 0.0, model=network)
    decayed = sgd_learner(one_device(), 0.1, model=network)
    before = [variable.numpy() for variable in decayed.model.trainable_variables]
    for old, without, with_decay in zip(before, one_step(plain, split),
                                        one_step(decayed, split)):
        name = with_decay.name
        expected = 0.05 * 0.1 * old if optimizers.decayed(with_decay) else 0.0
        np.testing.assert_allclose(without.numpy() - with_decay.numpy(), expected, atol=2e-6,
                                   err_msg=name)
    assert [variable.name for variable in decayed.model.trainable_variables
            if not optimizers.decayed(variable)]  # Some were spared.


def test_sgd_with_nesterov_and_its_penalty_trains_alike_on_one_and_two_replicas():
    split = tiny_split(48, seed=4)
    runs = []
    for strategy in (one_device(), two_replicas()):
        learner = sgd_learner(strategy, 5e-3, momentum=0.9, nesterov=True)
        batches = data.train_dataset(split, 16, seed=0, epoch=1)
        learner.train_steps(iter(learner.distribute_dataset(batches)), tf.constant(3))
        runs.append(learner.model.get_weights())
    for single, mirrored in zip(*runs):
        np.testing.assert_allclose(mirrored, single, atol=1e-5)


def test_norm_bias_lr_scale_moves_batch_norm_offsets_that_many_times_as_far():
    """One plain SGD step from the same weights: the offsets' steps 64x as long,
    every other weight's the same."""
    split = tiny_split(16, seed=4)
    plain = sgd_learner(one_device(), 0.0, model="airbench_64")
    scaled = sgd_learner(one_device(), 0.0, model="airbench_64", norm_bias_lr_scale=64.0)
    before = [variable.numpy() for variable in scaled.model.trainable_variables]
    offsets = 0
    for old, unscaled, variable in zip(before, one_step(plain, split), one_step(scaled, split)):
        factor = 64.0 if variable.name == "beta" else 1.0
        offsets += variable.name == "beta"
        np.testing.assert_allclose(variable.numpy() - old, factor * (unscaled.numpy() - old),
                                   rtol=1e-3, atol=1e-6, err_msg=variable.path)
    assert offsets == 6


def test_norm_bias_lr_scale_is_refused_with_adam():
    with pytest.raises(UserError, match="^--norm_bias_lr_scale needs --optimizer=sgd: Adam's "
                                        "steps do not grow with the gradients$"):
        Config(norm_bias_lr_scale=64.0)


@pytest.mark.parametrize("setting, value, message", [
    ("norm_bias_lr_scale", 64.0, "^--norm_bias_lr_scale needs a network with batch-norm "
                                 "offsets; --model=simple_cnn has none$"),
    ("whitening_bias_epochs", 3, "^--whitening_bias_epochs needs a network with a whitening "
                                 r"layer \(airbench's\); --model=simple_cnn has none$"),
])
def test_a_setting_for_layers_the_network_lacks_is_refused(setting, value, message):
    config = Config(optimizer="sgd", **{setting: value})
    with pytest.raises(UserError, match=message):
        Learner(one_device(), config, steps_per_epoch=4)
    Learner(one_device(), config.replace(model="airbench_64"), steps_per_epoch=4)  # It has both.
