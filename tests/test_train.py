"""A whole run, in-process and through train.py: what it trains and what it writes."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10_research import dataset, loop, run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from tests import events, fake_cifar
from tests.conftest import one_device, run_python

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def test_training_lowers_the_loss_and_evaluates_every_test_image(finished_run):
    _, _, results = finished_run
    history = results["history"]
    assert len(history["loss"]) == 2
    assert history["loss"][1] < history["loss"][0]
    assert results["test_count"] == 24
    assert results["test_accuracy"] == history["val_accuracy"][-1]


def test_the_run_folder_holds_every_file(finished_run):
    config, workdir, results = finished_run
    with open(os.path.join(workdir, run_folder.HISTORY)) as file:
        assert json.load(file) == results["history"]
    with open(os.path.join(workdir, run_folder.FLAGFILE)) as file:
        assert "--batch_size=16\n" in file.read()
    for png in (run_folder.ACCURACY_PLOT, run_folder.SAMPLE_PLOT):
        with open(os.path.join(workdir, png), "rb") as file:
            assert file.read(8) == PNG_SIGNATURE
    # Checkpoints are numbered by step: 2 epochs of 120 // 16 = 7 steps.
    assert tf.train.latest_checkpoint(os.path.join(workdir, run_folder.CHECKPOINTS)).endswith("-14")
    assert os.path.isfile(os.path.join(workdir, run_folder.SAVED_MODEL, "saved_model.pb"))
    assert sorted(p for p in os.listdir(workdir) if p.endswith(".tmp")) == []


def test_the_saved_model_predicts_like_the_trained_one(finished_run, tiny_data_dir):
    _, workdir, _ = finished_run
    saved = keras.models.load_model(os.path.join(workdir, run_folder.MODEL))
    images = dataset.load_cifar10(tiny_data_dir).test.images[:4].astype(np.float32) / 255.0
    assert saved.count_params() == 167_562
    restored = keras.models.clone_model(saved)
    checkpoint = tf.train.Checkpoint(model=restored)
    checkpoint.restore(tf.train.latest_checkpoint(
        os.path.join(workdir, run_folder.CHECKPOINTS))).expect_partial()
    np.testing.assert_allclose(saved(images), restored(images), atol=1e-6)


def test_tensorboard_holds_step_and_epoch_scalars(finished_run):
    _, workdir, results = finished_run
    history = results["history"]
    train = events.scalars(os.path.join(workdir, run_folder.TRAIN_LOGS))
    validation = events.scalars(os.path.join(workdir, run_folder.VALIDATION_LOGS))
    # 120 images / 16 = 7 steps an epoch; logged every 3 steps: 3, 6, 9, 12.
    assert [step for step, _ in train["loss"]] == [3, 6, 9, 12]
    assert [step for step, _ in train["accuracy"]] == [3, 6, 9, 12]
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in validation["epoch_accuracy"]],
                               history["val_accuracy"], rtol=1e-6)
    assert [step for step, _ in validation["epoch_loss"]] == [1, 2]


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
                        "--batch_size=16", f"--model_dir={tmp_path}", "--run_name=cli")
    assert result.returncode == 0, result.stderr
    assert "Epoch 1/1 - loss" in result.stdout
    assert "Test accuracy: " in result.stdout
    assert "Total params: 167,562" in result.stdout
    assert result.stderr == ""
    assert (tmp_path / "cli" / run_folder.HISTORY).is_file()


@pytest.mark.slow
def test_train_py_reports_bad_data_in_one_line(tiny_data_dir, tmp_path):
    os.remove(os.path.join(tiny_data_dir, dataset.FOLDER, "test_batch"))
    result = run_python("train.py", f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path}",
                        "--run_name=bad")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {tiny_data_dir}/{dataset.FOLDER}/test_batch is missing: re-extract "
        f"{dataset.TARBALL} there, or delete {tiny_data_dir}/{dataset.FOLDER} to download again"]
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_eval_mode_takes_the_network_from_the_runs_flags(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir, epochs=1, model="wide_cnn", run_name="wide")
    trained = loop.train_and_evaluate(config, str(tmp_path / "wide"), strategy=one_device())
    result = run_python("train.py", "--mode=eval", f"--model_dir={tmp_path}", "--run_name=wide",
                        f"--data_dir={tiny_data_dir}", "--batch_size=16")
    assert result.returncode == 0, result.stderr
    assert f"Test accuracy: {trained['test_accuracy']:.4f}" in result.stdout
    results = json.loads((tmp_path / "wide" / run_folder.EVAL_RESULTS).read_text())
    assert results["test_accuracy"] == pytest.approx(trained["test_accuracy"])
