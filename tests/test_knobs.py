"""The research knobs, wired through train_and_evaluate."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
from cifar10_research import evaluation, run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests import events
from tests.conftest import one_device, tiny_cifar, train_tiny


def train(tmp_path, name="knobs", **options):
    workdir = tmp_path / name
    return train_tiny(workdir, **options), str(workdir)


def test_the_learning_rate_follows_the_schedule_and_is_logged(tmp_path):
    _, workdir = train(tmp_path, lr_schedule="cosine", warmup_epochs=1)
    logged = dict(events.scalars(os.path.join(workdir, run_folder.TRAIN_LOGS))["learning_rate"])
    # 8 steps an epoch: warmup to 3e-3 over steps 0-8, then half a cosine to 0 by step 16.
    assert logged[2] == pytest.approx(3e-3 * 2 / 8)
    assert logged[8] == pytest.approx(3e-3)
    assert logged[12] == pytest.approx(3e-3 * 0.5)
    assert logged[16] == pytest.approx(0.0, abs=1e-9)


def test_augmentation_and_mixing_change_the_training_batches_but_not_the_evaluation(
        tmp_path):
    plain, _ = train(tmp_path, "plain", epochs=1)
    flipped, _ = train(tmp_path, "flipped", epochs=1, augment="flip_crop")
    augmented, workdir = train(tmp_path, "augmented", epochs=1, augment="flip_crop",
                               mix="cutmix")
    # Two plain runs of one seed are identical, so a difference comes from the batches.
    losses = [run["history"]["loss"] for run in (plain, flipped, augmented)]
    assert losses[0] != losses[1] != losses[2]
    # The run's own validation and test of its final weights equal their evaluation
    # with no augmentation or mix named at all.
    unaugmented = evaluation.evaluate_checkpoint(
        Config(epochs=1, batch_size=16), workdir, strategy=one_device(), cifar=tiny_cifar())
    assert augmented["history"]["val_loss"] == [unaugmented["test_loss"]]
    assert augmented["history"]["val_accuracy"] == [unaugmented["test_accuracy"]]
    assert (augmented["test_loss"], augmented["test_accuracy"]) == (
        unaugmented["test_loss"], unaugmented["test_accuracy"])


def _crossentropy(logits, labels, smoothing=0.0) -> np.ndarray:
    """Per-example crossentropy against label-smoothed one-hot targets, in float64."""
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    targets = np.eye(10)[labels] * (1 - smoothing) + smoothing / 10
    return -(targets * log_p).sum(axis=1)


@pytest.fixture(scope="module")
def smoothed_run(tmp_path_factory):
    """A run with --label_smoothing=0.2 and its final model."""
    workdir = tmp_path_factory.mktemp("knobs") / "smoothed"
    results = train_tiny(workdir, label_smoothing=0.2)
    return results, keras.models.load_model(os.path.join(workdir, run_folder.MODEL))


def _learner(weights, **settings) -> Learner:
    learner = Learner(one_device(), Config(batch_size=16, **settings), steps_per_epoch=8)
    learner.model.set_weights(weights)
    return learner


def test_val_loss_is_plain_crossentropy_despite_label_smoothing(smoothed_run):
    results, model = smoothed_run
    test = tiny_cifar().test
    learner = _learner(model.get_weights(), label_smoothing=0.0)
    logits = learner.model(learner.preprocess(test.images)).numpy()
    plain = _crossentropy(logits, test.labels).mean()
    assert results["history"]["val_loss"][-1] == pytest.approx(plain, rel=1e-5)
    # The model is confident enough for the smoothed loss to be told apart.
    assert _crossentropy(logits, test.labels, 0.2).mean() > plain + 0.05
    unsmoothed = learner.evaluate(test).means()
    assert unsmoothed["loss"] == results["history"]["val_loss"][-1] == results["test_loss"]


def test_the_training_loss_includes_label_smoothing(smoothed_run):
    _, model = smoothed_run
    learner = _learner(model.get_weights(), label_smoothing=0.2)
    batches = data.train_dataset(tiny_cifar().train, 16, seed=0, epoch=1)
    images, labels = next(iter(batches))
    logits = learner.model(learner.preprocess(images)).numpy()
    expected = _crossentropy(logits, np.argmax(labels, axis=1), 0.2).mean()
    learner.train_steps(iter(learner.distribute_dataset(batches)), tf.constant(1))
    sums = learner.train_totals.sums()
    assert sums["count"] == 16
    assert sums["loss"] / sums["count"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("network", ["simple_cnn", "wide_cnn"])
def test_weight_decay_shrinks_kernels_by_lr_times_decay_and_spares_the_rest(network):
    """With zero gradients Adam moves nothing, so what changes is AdamW's decoupled
    decay alone: kernel * (1 - lr * wd) per step; biases and batch-norm gamma and
    beta are excluded."""
    learning_rate, weight_decay, steps = 0.01, 0.5, 3
    learner = Learner(one_device(), Config(model=network, learning_rate=learning_rate,
                                           weight_decay=weight_decay), steps_per_epoch=8)
    variables = learner.model.trainable_variables
    rng = np.random.default_rng(0)
    for variable in variables:  # Biases and beta start at 0, which decay would leave at 0.
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    before = [variable.numpy() for variable in variables]
    zeros = [tf.zeros_like(variable) for variable in variables]
    for _ in range(steps):
        learner.strategy.run(lambda: learner.optimizer.apply_gradients(zip(zeros, variables)))
    factor = (1 - learning_rate * weight_decay) ** steps
    kinds = {variable.name for variable in variables}
    assert "kernel" in kinds and kinds <= {"kernel", "bias", "gamma", "beta"}
    for variable, old in zip(variables, before):
        if variable.name == "kernel":
            np.testing.assert_allclose(variable.numpy(), old * factor, rtol=1e-5)
        else:
            np.testing.assert_array_equal(variable.numpy(), old, err_msg=variable.path)


def test_the_wide_model_trains_and_resumes_exactly(tmp_path, crash_on_save):
    options = dict(model="wide_cnn", augment="flip", checkpoint_every_n_steps=3)
    uninterrupted, _ = train(tmp_path, "whole", **options)
    with crash_on_save(3, OSError("simulated crash")), pytest.raises(UserError,
                                                                     match="simulated crash"):
        train(tmp_path, "interrupted", **options)
    resumed, _ = train(tmp_path, "interrupted", **options)
    assert resumed["weights_fingerprint"] == uninterrupted["weights_fingerprint"]
    assert resumed["history"]["val_loss"] == uninterrupted["history"]["val_loss"]


def test_a_fractional_warmup_counts_the_steps_of_its_share_of_an_epoch(tmp_path):
    _, workdir = train(tmp_path, lr_schedule="linear", warmup_epochs=0.5)
    logged = dict(events.scalars(os.path.join(workdir, run_folder.TRAIN_LOGS))["learning_rate"])
    # 8 steps an epoch: up to 3e-3 over 4 steps, then down to 0 at step 16.
    assert logged[2] == pytest.approx(3e-3 * 2 / 4)
    assert logged[4] == pytest.approx(3e-3)
    assert logged[10] == pytest.approx(3e-3 * 6 / 12)
    assert logged[16] == pytest.approx(0.0, abs=1e-9)
