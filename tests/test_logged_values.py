"""The values of the step scalars: each the mean loss and accuracy of the steps since
the previous log step of its epoch, in a run and across a stop and resume."""

import signal
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import data
from cifar10_research import loop, run_folder, stopping
from cifar10_research.config import Config
from cifar10_research.errors import Interrupted, UserError
from cifar10_research.learner import Learner
from tests import events
from tests.conftest import one_device, tiny_cifar, train_tiny

# train_tiny's run (2 epochs of tiny_cifar's 128 images in batches of 16: 8 steps each),
# logging every 3 steps.
SETTINGS = dict(deterministic=True, log_every_n_steps=3)
CONFIG = Config(epochs=2, batch_size=16, learning_rate=3e-3, **SETTINGS)
STEPS_PER_EPOCH = 8
# Each log step and the steps it is the mean of: those after the previous log step of
# its epoch. Steps 7 and 8 count only in epoch 1's mean, 16 only in epoch 2's.
WINDOWS = {3: [1, 2, 3], 6: [4, 5, 6], 9: [9], 12: [10, 11, 12], 15: [13, 14, 15]}
TRAIN = run_folder.TRAIN_LOGS


@pytest.fixture(scope="module")
def deterministic():
    """Op determinism, as --deterministic turns it on for the whole process; off again
    after the module, as the tests that follow expect."""
    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_on:
        tf_config.disable_op_determinism()


def scalars(workdir) -> dict:
    """{(logs, tag): [(step, value), ...]} of a run folder's train/ and validation/ logs."""
    return {(logs, tag): values for logs in (run_folder.TRAIN_LOGS, run_folder.VALIDATION_LOGS)
            for tag, values in events.scalars(str(workdir / logs)).items()}


@pytest.fixture(scope="module")
def uninterrupted(deterministic, tmp_path_factory):
    """The run's results and scalars."""
    workdir = tmp_path_factory.mktemp("logged") / "whole"
    results = train_tiny(workdir, **SETTINGS)
    return results, scalars(workdir)


@pytest.fixture(scope="module")
def per_step(deterministic):
    """Each step's mean loss and accuracy, computed with numpy from the model's outputs
    just before the step, on a Learner made and fed as the run does, driven by hand one
    step at a time; and the weights' fingerprint at the end."""
    keras.utils.set_random_seed(CONFIG.seed)
    learner = Learner(one_device(), CONFIG, STEPS_PER_EPOCH)
    losses, hits = [], []
    for epoch in range(1, CONFIG.epochs + 1):
        batches = data.train_dataset(tiny_cifar().train, CONFIG.batch_size, CONFIG.seed, epoch)
        iterator = iter(learner.distribute_dataset(batches))
        for images, labels in batches:
            logits = learner.model(learner.preprocess(images), training=True).numpy()
            truth = labels.numpy().argmax(axis=1)
            log_p = logits - np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
            losses.append(-log_p[np.arange(len(truth)), truth].mean())
            hits.append(np.mean(logits.argmax(axis=1) == truth))
            learner.train_steps(iterator, tf.constant(1))
    return np.array(losses), np.array(hits), learner.weights_fingerprint()


def means(per_step_values: np.ndarray, windows) -> list:
    """The mean of each window of (1-based) steps."""
    return [per_step_values[np.array(steps) - 1].mean() for steps in windows]


def test_the_reference_steps_train_the_runs_weights(uninterrupted, per_step):
    results, _ = uninterrupted
    assert per_step[2] == results["weights_fingerprint"]


def test_step_scalars_are_the_means_since_the_previous_log_step(uninterrupted, per_step):
    _, logged = uninterrupted
    losses, hits, _ = per_step
    for tag, values in (("loss", losses), ("accuracy", hits)):
        assert [step for step, _ in logged[TRAIN, tag]] == list(WINDOWS), tag
        np.testing.assert_allclose([value for _, value in logged[TRAIN, tag]],
                                   means(values, WINDOWS.values()), rtol=1e-5, err_msg=tag)


def test_epoch_results_are_the_means_over_every_step_of_the_epoch(uninterrupted, per_step):
    results, logged = uninterrupted
    losses, hits, _ = per_step
    epochs = [range(1, 9), range(9, 17)]
    for key, values in (("loss", losses), ("accuracy", hits)):
        np.testing.assert_allclose(results["history"][key], means(values, epochs), rtol=1e-5)
        np.testing.assert_allclose([value for _, value in logged[TRAIN, f"epoch_{key}"]],
                                   means(values, epochs), rtol=1e-5)


@pytest.fixture
def stop_after(monkeypatch):
    """`stop_after(n)`: SIGTERM, as a preempted machine gets, once the run has taken n steps."""
    def arrange(steps):
        real_step = loop.TrainingLoop.step

        def step(self):
            taken = real_step(self)
            if taken == steps:
                monkeypatch.undo()  # Once.
                # Only while training does SIGTERM request a stop; else it would end pytest.
                assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
                signal.raise_signal(signal.SIGTERM)
                while stopping.requested() is None:  # Until the watcher has taken it.
                    time.sleep(0.001)
            return taken
        monkeypatch.setattr(loop.TrainingLoop, "step", step)
    return arrange


def test_a_run_stopped_mid_epoch_logs_each_step_once_as_if_uninterrupted(
        uninterrupted, stop_after, tmp_path, capsys):
    results, logged = uninterrupted
    stop_after(11)  # Mid-epoch 2, between log steps 9 and 12.
    with pytest.raises(Interrupted, match="Stopped by SIGTERM after step 11"):
        train_tiny(tmp_path / "stopped", **SETTINGS)
    capsys.readouterr()
    resumed = train_tiny(tmp_path / "stopped", **SETTINGS)
    assert "ckpt-11: epoch 2, after step 3 of 8" in capsys.readouterr().out
    assert_logged_as_uninterrupted(scalars(tmp_path / "stopped"), logged)
    assert resumed["weights_fingerprint"] == results["weights_fingerprint"]


def test_a_run_that_crashed_after_logging_unsaved_steps_logs_them_once(
        uninterrupted, crash_on_save, tmp_path, capsys):
    """The epoch-end checkpoint at step 8 fails after steps 6 and 8 are logged: the
    rerun resumes from step 4 and logs 6 and 8 again, in place of the old points."""
    results, logged = uninterrupted
    with crash_on_save(2, OSError(28, "No space left on device")):
        with pytest.raises(UserError):
            train_tiny(tmp_path / "crashed", checkpoint_every_n_steps=4, **SETTINGS)
    capsys.readouterr()
    resumed = train_tiny(tmp_path / "crashed", checkpoint_every_n_steps=4, **SETTINGS)
    assert "ckpt-4: epoch 1, after step 4 of 8" in capsys.readouterr().out
    assert_logged_as_uninterrupted(scalars(tmp_path / "crashed"), logged)
    assert resumed["weights_fingerprint"] == results["weights_fingerprint"]


def assert_logged_as_uninterrupted(appended: dict, logged: dict) -> None:
    assert sorted(appended) == sorted(logged)
    for tag, values in logged.items():
        assert [step for step, _ in appended[tag]] == [step for step, _ in values], tag
        if not tag[1].startswith("perf/"):  # Speed and seconds are wall time.
            # A window cut by a stop begins with the steps saved before it.
            np.testing.assert_allclose([value for _, value in appended[tag]],
                                       [value for _, value in values], rtol=1e-6,
                                       err_msg=str(tag))
