"""Distributed training gives the results of one device: 2 logical CPUs vs 1."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
from cifar10_research import distribute, run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests.conftest import (one_device, run_python, tiny_cifar, tiny_split, train_tiny,
                            two_replicas)


def fresh_learner(strategy, batch_size=16, seed=0, **settings):
    keras.utils.set_random_seed(seed)
    return Learner(strategy, Config(batch_size=batch_size, learning_rate=3e-3, **settings),
                   steps_per_epoch=6)


def losses_and_weights(strategy, split, steps, mixing):
    """The mean loss of each of `steps` steps, and the weights after them."""
    learner = fresh_learner(strategy)
    iterator = iter(learner.distribute_dataset(data.train_dataset(split, 16, seed=0, epoch=1,
                                                                  mixing=mixing)))
    losses = []
    for _ in range(steps):
        learner.train_totals.reset()
        learner.train_steps(iterator, tf.constant(1))
        sums = learner.train_totals.sums()
        assert sums["count"] == 16
        losses.append(sums["loss"] / sums["count"])
    return losses, learner.model.get_weights()


@pytest.mark.parametrize("mixing", ["none", "mixup"])  # mixup: float32 images, soft labels.
def test_two_replicas_train_exactly_like_one_device(mixing):
    split = tiny_split(96)
    single_losses, single_weights = losses_and_weights(one_device(), split, 6, mixing)
    mirrored_losses, mirrored_weights = losses_and_weights(two_replicas(), split, 6, mixing)
    np.testing.assert_allclose(mirrored_losses, single_losses, atol=1e-5)
    assert single_losses[-1] < single_losses[0]
    for mirrored, single in zip(mirrored_weights, single_weights):
        np.testing.assert_allclose(mirrored, single, atol=1e-5)


@pytest.mark.parametrize("rows", [37, 33, 16])
def test_evaluation_counts_each_example_once_on_two_replicas(rows):
    """37 = 2 x 16 + 5 splits 3/2 over the replicas; 33 leaves one example."""
    split = tiny_split(rows, seed=5)
    single = fresh_learner(one_device()).evaluate(split)
    mirrored = fresh_learner(two_replicas()).evaluate(split)
    assert single["count"] == mirrored["count"] == rows
    probabilities = fresh_learner(one_device()).classifier(split.images).numpy()
    expected_loss = -np.mean(np.log(probabilities[np.arange(rows), split.labels]))
    expected_accuracy = np.mean(np.argmax(probabilities, axis=1) == split.labels)
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    expected_top5 = np.mean([label in best for label, best in zip(split.labels, top5)])
    assert mirrored.means()["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert mirrored.means()["accuracy"] == pytest.approx(expected_accuracy)
    assert mirrored.means()["top5_accuracy"] == pytest.approx(expected_top5)
    assert single.means()["top5_accuracy"] == pytest.approx(expected_top5)
    assert single.means()["loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_test_time_augmentation_averages_each_image_with_its_mirror():
    split = tiny_split(37, seed=5)
    learner = fresh_learner(two_replicas(), tta="flip")
    results = learner.evaluate(split).means()
    probabilities = (learner.classifier(split.images).numpy()
                     + learner.classifier(split.images[:, :, ::-1]).numpy()) / 2
    assert learner.evaluate(split)["count"] == 37
    assert results["loss"] == pytest.approx(
        -np.mean(np.log(probabilities[np.arange(37), split.labels])), rel=1e-5)
    assert results["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == split.labels))
    without = fresh_learner(two_replicas()).evaluate(split).means()  # The same weights.
    assert without["loss"] != pytest.approx(results["loss"], rel=1e-5)


def test_translated_views_are_weighted_as_airbench94_weights_them():
    """Its 6 views: the images and their mirrors (a quarter each), the same
    shifted 1 pixel down-right, and up-left, borders reflected (an eighth each)."""
    split = tiny_split(21, seed=6)
    learner = fresh_learner(two_replicas(), tta="flip_translate")
    kernel = learner.model.layers[-1].kernel  # Made large: confident, view-dependent predictions.
    kernel.assign(kernel * 100)
    results = learner.evaluate(split).means()
    padded = np.pad(split.images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    probabilities = 0
    for weight, images in ((0.5, split.images), (0.25, padded[:, :-2, :-2]),
                           (0.25, padded[:, 2:, 2:])):
        for view in (images, images[:, :, ::-1]):
            probabilities = probabilities + weight / 2 * learner.classifier(view).numpy()
    assert results["loss"] == pytest.approx(
        -np.mean(np.log(probabilities[np.arange(21), split.labels])), rel=1e-5)
    assert results["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == split.labels))


def trained_weights(tmp_path, name, strategy, **changes):
    """The weights of a 1-epoch run on 120 training images."""
    train_tiny(tmp_path / name, strategy, tiny_cifar(120, 24), epochs=1, log_every_n_steps=4,
               **changes)
    return keras.models.load_model(str(tmp_path / name / run_folder.MODEL)).get_weights()


def test_steps_per_loop_does_not_change_the_result(tmp_path):
    one_at_a_time = trained_weights(tmp_path, "loop1", one_device(), steps_per_loop=1)
    five_at_a_time = trained_weights(tmp_path, "loop5", one_device(), steps_per_loop=5)
    for five, one in zip(five_at_a_time, one_at_a_time):
        np.testing.assert_allclose(five, one, atol=1e-6)


def test_mirrored_run_folder_matches_one_device(tmp_path):
    single = trained_weights(tmp_path, "single", one_device())
    mirrored = trained_weights(tmp_path, "mirrored", two_replicas(), steps_per_loop=3)
    for two, one in zip(mirrored, single):
        np.testing.assert_allclose(two, one, atol=1e-5)
    with open(tmp_path / "mirrored" / run_folder.HISTORY) as file:
        mirrored_history = json.load(file)
    with open(tmp_path / "single" / run_folder.HISTORY) as file:
        single_history = json.load(file)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(mirrored_history[key], single_history[key], atol=1e-5)


def test_a_batch_that_does_not_divide_over_the_replicas_is_refused(tmp_path):
    with pytest.raises(UserError, match="--batch_size=15 does not divide over the 2 replicas: "
                                        "pick a multiple of 2"):
        trained_weights(tmp_path, "odd", two_replicas(), batch_size=15)


def test_strategies_by_name():
    assert isinstance(distribute.make_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    mirrored = distribute.make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2  # The 2 logical CPUs of conftest.
    assert isinstance(distribute.make_strategy("auto"), tf.distribute.OneDeviceStrategy)


def test_auto_says_what_it_picked_and_why(monkeypatch, capsys):
    for name in ("TF_CONFIG", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    distribute.make_strategy("auto")
    assert capsys.readouterr().out == ("--strategy=auto picked one_device: 0 GPUs visible and "
                                       "no TF_CONFIG or Slurm step of several tasks\n")


@pytest.mark.parametrize("tf_config, message", [
    (None, "--strategy=multi_worker needs a cluster: set the TF_CONFIG environment variable "
           "on every worker, .*; or start one Slurm task per worker, srun --ntasks=2"),
    ("{not json", "TF_CONFIG is malformed"),
    ('{"cluster": {}}', "TF_CONFIG is malformed .*KeyError"),
    ('{"cluster": {"worker": "h:1"}, "task": {"type": "worker", "index": 0}}',
     "cluster.worker must be a list of host:port strings"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 3}}',
     "is not in its cluster"),
])
def test_a_bad_tf_config_is_refused_before_any_worker_starts(monkeypatch, tf_config, message):
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UserError, match=message):
        distribute.make_strategy("multi_worker")


@pytest.mark.slow
def test_train_py_reports_a_malformed_tf_config_in_one_line(tiny_data_dir, tmp_path):
    result = run_python("train.py", "--strategy=multi_worker", f"--data_dir={tiny_data_dir}",
                        f"--model_dir={tmp_path}", env={"TF_CONFIG": "{oops"})
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: TF_CONFIG is malformed")
