"""--ema_decay: a moving average of the weights, evaluated and exported; the raw ones train."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
from cifar10_research import averaging, evaluation, run_folder
from cifar10_research.config import Config
from cifar10_research.learner import Learner
from tests import events
from tests.conftest import one_device, tiny_cifar, tiny_split, train_tiny, two_replicas

DECAY = 0.9


def averaged_learner(strategy, model="wide_cnn", **settings):
    keras.utils.set_random_seed(0)
    config = Config(batch_size=16, learning_rate=3e-3, model=model, ema_decay=DECAY)
    return Learner(strategy, config.replace(**settings), steps_per_epoch=4)


def test_the_average_follows_the_weights_step_by_step_and_swaps_in():
    """wide_cnn: its batch-norm statistics are averaged too."""
    learner = averaged_learner(one_device())
    batches = data.train_dataset(tiny_split(64, seed=2), 16, seed=0, epoch=1)
    iterator = iter(learner.distribute_dataset(batches))
    expected = [weight.numpy() for weight in learner.model.weights]
    for step in range(1, 5):
        learner.train_steps(iterator, tf.constant(1))
        decay = min(DECAY, (1 + step) / (10 + step))
        expected = [decay * average + (1 - decay) * weight.numpy()
                    for average, weight in zip(expected, learner.model.weights)]
    raw = [weight.numpy() for weight in learner.model.weights]
    assert any(not np.allclose(r, e) for r, e in zip(raw, expected))
    with learner.averaged():
        for weight, average in zip(learner.model.weights, expected):
            np.testing.assert_allclose(weight.numpy(), average, rtol=1e-5, atol=1e-6)
    for weight, before in zip(learner.model.weights, raw):
        np.testing.assert_array_equal(weight.numpy(), before)


def test_the_average_is_the_same_on_one_and_two_replicas():
    """simple_cnn: no dropout or batch statistics, which differ by replica. SGD:
    Adam divides by the gradients' size, which turns the rounding of the
    replicas' sum into differences of 1e-4 in weights with tiny gradients
    (seen on an AVX2 CPU); SGD keeps them at the rounding's size."""
    averages = []
    for strategy in (one_device(), two_replicas()):
        learner = averaged_learner(strategy, model="simple_cnn", optimizer="sgd",
                                   learning_rate=0.05)
        batches = data.train_dataset(tiny_split(64, seed=2), 16, seed=0, epoch=1)
        learner.train_steps(iter(learner.distribute_dataset(batches)), tf.constant(4))
        with learner.averaged():
            averages.append(learner.model.get_weights())
    for single, mirrored in zip(*averages):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("averaged") / "run"
    return workdir, train_tiny(workdir, ema_decay=DECAY, keep_checkpoints=5)


def test_a_run_evaluates_and_exports_the_average_and_shows_both_in_tensorboard(averaged_run):
    workdir, results = averaged_run
    learner = Learner(one_device(), Config(batch_size=16, ema_decay=DECAY), steps_per_epoch=7)
    checkpoint = tf.train.Checkpoint(**learner.checkpointed())
    checkpoint.restore(tf.train.latest_checkpoint(str(workdir / run_folder.CHECKPOINTS)))
    test = tiny_cifar().test
    raw_accuracy = learner.evaluate(test).means()["accuracy"]
    raw_weights = learner.model.get_weights()
    averages = [average.numpy() for average in learner.average.averages]
    exported = keras.models.load_model(os.path.join(workdir, run_folder.MODEL))
    for weight, average, raw in zip(exported.get_weights(), averages, raw_weights):
        np.testing.assert_array_equal(weight, average)
        assert not np.array_equal(weight, raw)
    learner.model.set_weights(averages)
    assert learner.evaluate(test).means()["accuracy"] == results["test_accuracy"]
    raw = events.scalars(str(workdir / run_folder.RAW_VALIDATION_LOGS))["epoch_accuracy"]
    averaged = events.scalars(str(workdir / run_folder.VALIDATION_LOGS))["epoch_accuracy"]
    assert [step for step, _ in raw] == [step for step, _ in averaged] == [1, 2]
    assert [value for _, value in averaged] == pytest.approx(
        results["history"]["val_accuracy"])
    assert raw[-1][1] == pytest.approx(raw_accuracy)  # The test set is the validation here.


def test_eval_mode_evaluates_the_average(averaged_run):
    workdir, results = averaged_run
    evaluated = evaluation.evaluate_checkpoint(
        Config(batch_size=16, ema_decay=DECAY, mode="eval", run_name="run"), str(workdir),
        strategy=one_device(), cifar=tiny_cifar())
    assert evaluated["test_accuracy"] == results["test_accuracy"]
    assert evaluated["test_loss"] == pytest.approx(results["test_loss"], rel=1e-6)
    raw = evaluation.evaluate_checkpoint(  # Without the average: the raw weights' results.
        Config(batch_size=16, mode="eval", run_name="run"), str(workdir),
        strategy=one_device(), cifar=tiny_cifar())
    assert raw["test_loss"] != pytest.approx(results["test_loss"], rel=1e-6)


def airbench_lookahead(weights: list, every: int, after_epochs: int, total: int,
                       epoch_steps: int):
    """airbench94's LookaheadState, step by step, on `weights[t]`: the weights
    training reached after step t + 1 from those Lookahead left after step t.
    Returns the weights Lookahead leaves after each step."""
    slow, left = None, []
    for step, weight in enumerate(weights, 1):
        epoch = (step - 1) // epoch_steps  # airbench counts epochs from 0.
        if epoch >= after_epochs and step % every == 0:
            if slow is None:
                slow = weight.copy()
            else:
                rho = 0.95 ** every * (step / total) ** 3
                slow = slow + (1 - rho) * (weight - slow)
                weight = slow.copy()
        elif slow is not None and step % epoch_steps == 0:
            weight = slow.copy()
        left.append(weight)
    return left


def test_lookahead_moves_and_copies_back_as_airbench94s():
    network = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    # From epoch 2 on, due at steps 6, 9 and 12; epoch ends at 8 and 12 too.
    lookahead = averaging.Lookahead(network, every=3, start_step=4, total_steps=12,
                                    steps_per_epoch=4)
    rng = np.random.default_rng(0)
    trained, left = [], []
    for step in range(1, 13):
        kernel = network.layers[0].kernel
        kernel.assign(kernel.numpy() + rng.standard_normal(kernel.shape).astype(np.float32))
        trained.append(kernel.numpy())
        lookahead.update(tf.constant(step, tf.int64))
        left.append(kernel.numpy())
    expected = airbench_lookahead(trained, every=3, after_epochs=1, total=12, epoch_steps=4)
    for step, (ours, theirs) in enumerate(zip(left, expected), 1):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
    assert not np.allclose(left[-1], trained[-1])  # It changed the weights.


def four_steps(strategy, model="simple_cnn", **settings) -> Learner:
    """A learner of one 4-step epoch, after its 4 steps of SGD."""
    keras.utils.set_random_seed(0)
    learner = Learner(strategy, Config(batch_size=16, learning_rate=0.05, optimizer="sgd",
                                       epochs=1, model=model, **settings), steps_per_epoch=4)
    batches = data.train_dataset(tiny_split(64, seed=2), 16, seed=0, epoch=1)
    learner.train_steps(iter(learner.distribute_dataset(batches)), tf.constant(4))
    return learner


def test_lookahead_is_the_same_on_one_and_two_replicas():
    """Due at steps 2 (taking the weights) and 4 (keeping rho = 0.9 of them)."""
    weights = [four_steps(strategy, lookahead_every=2).model.get_weights()
               for strategy in (one_device(), two_replicas())]
    for single, mirrored in zip(*weights):
        np.testing.assert_allclose(mirrored, single, rtol=1e-4, atol=1e-5)
    without = four_steps(one_device()).model.get_weights()
    assert not all(np.allclose(ours, plain) for ours, plain in zip(weights[0], without))


def test_lookahead_leaves_each_replicas_batch_statistics_until_it_is_due():
    learner = four_steps(two_replicas(), model="wide_cnn", lookahead_every=8)  # Not yet due.
    for statistic in (weight for weight in learner.model.weights if "moving" in weight.path):
        first, second = (copy.numpy() for copy in statistic.value.values)
        assert not np.allclose(first, second), statistic.path
