"""A whole run, in-process and through train.py: what it trains and what it writes."""

import dataclasses
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import flags
import model
from cifar10_research import dataset, loop, metrics, run_folder
from cifar10_research.config import COMMAND, Config
from cifar10_research.errors import UserError
from cifar10_research.learner import Learner
from tests import fake_cifar
from tests.conftest import one_device, run_python, tiny_split, two_replicas


def tiny_config(data_dir, **changes):
    """Settings small enough to train in seconds on the tiny dataset."""
    return Config(epochs=2, batch_size=16, learning_rate=3e-3, data_dir=data_dir,
                  log_every_n_steps=3, run_name="tiny").replace(**changes)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One 2-epoch run on the tiny dataset, shared by the checks below."""
    root = tmp_path_factory.mktemp("run")
    fake_cifar.write_folder(str(root / "data"))
    config = tiny_config(str(root / "data"))
    workdir = str(root / "runs" / "tiny")
    results = loop.train_and_evaluate(config, workdir, strategy=one_device())
    return config, workdir, results


def test_the_run_trains_its_epochs_and_evaluates_every_test_image(finished_run):
    _, _, results = finished_run
    history = results["history"]
    assert len(history["loss"]) == 2
    assert results["test_count"] == 24
    assert results["test_accuracy"] == history["val_accuracy"][-1]


@pytest.fixture(scope="module")
def trained_model(finished_run):
    """The run's model.keras, and the test images, the stored pixels it takes."""
    config, workdir, _ = finished_run
    images = dataset.load(config.data_dir).test.images
    return keras.models.load_model(os.path.join(workdir, run_folder.MODEL)), images


def trained_learner(finished_run, trained_model, strategy) -> Learner:
    """A Learner under `strategy` holding the weights of the run's model.keras."""
    config, _, _ = finished_run
    learner = Learner(strategy, config, steps_per_epoch=1)
    learner.model.set_weights(trained_model[0].get_weights())
    return learner


def test_the_history_has_one_entry_per_epoch_as_the_run_returned(finished_run):
    config, workdir, results = finished_run
    with open(os.path.join(workdir, run_folder.HISTORY)) as file:
        history = json.load(file)
    assert history == results["history"]
    assert set(history) == {*run_folder.HISTORY_KEYS, "val_data"}
    assert all(len(history[key]) == config.epochs for key in run_folder.HISTORY_KEYS)
    assert history["val_data"] == run_folder.TEST_SET
    assert all(0 <= value <= 1 for key in ("accuracy", "val_accuracy") for value in history[key])
    assert all(value > 0 for key in ("loss", "val_loss", "seconds", "cpu_seconds")
               for value in history[key])


def test_results_json_holds_the_returned_results_of_the_final_weights(
        finished_run, trained_model):
    _, workdir, results = finished_run
    with open(os.path.join(workdir, run_folder.RESULTS)) as file:
        saved = json.load(file)
    assert saved == {key: value for key, value in results.items() if key != "history"}
    history = results["history"]
    assert saved["test_count"] == 24  # The tiny test batch, each image once.
    assert {f"test_{metric.name}" for metric in metrics.EVALUATION} <= set(saved)
    assert saved["test_accuracy"] * 24 == pytest.approx(round(saved["test_accuracy"] * 24))
    assert (saved["val_loss"], saved["val_accuracy"]) == (history["val_loss"][-1],
                                                          history["val_accuracy"][-1])
    assert saved["best_val_accuracy"] == max(history["val_accuracy"])
    assert history["val_accuracy"][saved["best_epoch"] - 1] == saved["best_val_accuracy"]
    learner = trained_learner(finished_run, trained_model, one_device())
    assert saved["weights_fingerprint"] == learner.weights_fingerprint()


def test_flags_txt_replays_the_runs_settings(finished_run, parse):
    config, workdir, _ = finished_run
    parse(f"--flagfile={os.path.join(workdir, run_folder.FLAGFILE)}")
    saved = [field.name for field in dataclasses.fields(Config)
             if field.metadata["kind"] != COMMAND]
    assert {name: flags.FLAGS[name].value for name in saved} == {
        name: getattr(config, name) for name in saved}
    assert all(not flags.FLAGS[field.name].present for field in dataclasses.fields(Config)
               if field.metadata["kind"] == COMMAND)  # Replaying must not force or evaluate.


def test_the_run_folder_holds_every_file_whole(finished_run):
    _, workdir, _ = finished_run
    for name in run_folder.ARTIFACTS + (run_folder.RESULTS,):
        assert os.path.isfile(os.path.join(workdir, name)), name
    # Checkpoints are numbered by step: epochs of 120 // 16 = 7 steps end at 7 and 14.
    state = tf.train.get_checkpoint_state(os.path.join(workdir, run_folder.CHECKPOINTS))
    assert [os.path.basename(path) for path in state.all_model_checkpoint_paths] == [
        "ckpt-7", "ckpt-14"]
    assert [name for name in os.listdir(workdir) if ".tmp" in name or ".partial" in name] == []


def test_model_keras_holds_the_latest_checkpoints_weights(finished_run, trained_model):
    _, workdir, _ = finished_run
    saved, images = trained_model
    assert saved.count_params() == 167_562
    restored = model.simple_cnn()
    checkpoint = tf.train.Checkpoint(model=restored)
    checkpoint.restore(tf.train.latest_checkpoint(
        os.path.join(workdir, run_folder.CHECKPOINTS))).expect_partial()
    np.testing.assert_allclose(saved(images), model.classifier(restored)(images), atol=1e-6)


def test_the_exported_saved_model_predicts_like_model_keras(finished_run, trained_model):
    config, workdir, results = finished_run
    saved, images = trained_model
    expected = saved(images, training=False).numpy()
    labels = dataset.load(config.data_dir).test.labels
    # model.keras is the run's final model: it scores the reported test accuracy.
    assert np.mean(expected.argmax(axis=1) == labels) == pytest.approx(results["test_accuracy"])
    exported = tf.saved_model.load(os.path.join(workdir, run_folder.SAVED_MODEL))
    serving = exported.signatures["serving_default"]
    [input_name] = serving.structured_input_signature[1]
    [served] = serving(**{input_name: tf.constant(images)}).values()
    for probabilities in (exported.serve(images).numpy(), served.numpy()):
        np.testing.assert_array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)


@pytest.mark.parametrize("strategy", [one_device, two_replicas])
def test_the_confusion_matrix_counts_every_image_once_and_no_padding(
        finished_run, trained_model, strategy):
    learner = trained_learner(finished_run, trained_model, strategy())
    split = tiny_split(37, seed=3)  # Batches of 16: the third holds 5 images and 11 padding rows.
    evaluated = learner.evaluate(split)
    matrix = learner.confusion.result()
    probabilities = trained_model[0](split.images).numpy()
    expected = np.zeros([split.num_classes] * 2, np.int64)
    np.add.at(expected, (split.labels, probabilities.argmax(axis=1)), 1)
    assert matrix.sum() == len(split) == evaluated["count"]
    np.testing.assert_array_equal(matrix.sum(axis=1),
                                  np.bincount(split.labels, minlength=split.num_classes))
    np.testing.assert_array_equal(matrix, expected)
    assert evaluated.means()["accuracy"] == pytest.approx(np.trace(expected) / len(split))
    assert evaluated.means()["loss"] == pytest.approx(
        -np.log(probabilities[np.arange(len(split)), split.labels]).mean(), rel=1e-5)


def test_a_finished_run_is_evaluated_not_trained_again(finished_run, capsys):
    config, workdir, results = finished_run
    with open(os.path.join(workdir, run_folder.HISTORY)) as file:
        before = file.read()
    again = loop.train_and_evaluate(config, workdir, strategy=one_device())
    assert "has finished its 2 epochs; its results:" in capsys.readouterr().out
    assert again["weights_fingerprint"] == results["weights_fingerprint"]
    assert again["test_accuracy"] == results["test_accuracy"]
    with open(os.path.join(workdir, run_folder.HISTORY)) as file:
        assert file.read() == before


def test_a_run_folder_that_cannot_be_written_is_refused(tiny_data_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the run folder .*a writable --model_dir"):
        loop.train_and_evaluate(tiny_config(tiny_data_dir), str(blocker / "run"),
                                strategy=one_device())


def test_a_batch_larger_than_the_training_set_is_refused(tiny_data_dir, tmp_path):
    with pytest.raises(UserError, match="--batch_size=256 is larger than the 120 training"):
        loop.train_and_evaluate(tiny_config(tiny_data_dir, batch_size=256),
                                str(tmp_path / "run"), strategy=one_device())


@pytest.mark.slow
def test_train_py_trains_prints_results_and_no_banners(tiny_data_dir, tmp_path):
    result = run_python("train.py", f"--data_dir={tiny_data_dir}", "--epochs=1",
                        "--batch_size=16", f"--model_dir={tmp_path}", "--run_name=cli",
                        fresh=True)  # A new interpreter: one that imports TensorFlow.
    assert result.returncode == 0, result.stderr
    [epoch_line] = [line for line in result.stdout.splitlines() if line.startswith("Epoch 1/1")]
    for metric in metrics.EVALUATION:  # The epoch line and the test line name every metric.
        assert re.search(rf" - val_{metric.name} \d\.\d{{4}} - ", epoch_line), metric.name
        if metric != metrics.ACCURACY:
            assert re.search(rf"^Test accuracy: \d\.\d{{4}} \((.*, )?{metric.name} \d\.\d{{4}}, "
                             rf"(.*, )?24 images\)$", result.stdout, re.MULTILINE), metric.name
    assert "Total params: 167,562" in result.stdout
    assert result.stderr == ""
    assert (tmp_path / "cli" / run_folder.HISTORY).is_file()


@pytest.mark.slow
def test_train_py_reports_bad_data_in_one_line(tiny_data_dir, tmp_path):
    folder = os.path.join(tiny_data_dir, dataset.CIFAR10.folder)
    os.remove(os.path.join(folder, "test_batch"))
    result = run_python("train.py", f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path}",
                        "--run_name=bad")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {folder}/test_batch is missing: re-extract {dataset.CIFAR10.tarball} there, "
        f"or delete {folder} to download again"]
    assert not (tmp_path / "bad").exists()
