"""What TensorBoard and the figures show, read back from the files."""

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10_research import dataset, learner, metrics, run_folder, summaries
from cifar10_research.config import COMPUTES, Config
from tests import events
from tests.conftest import HELD, WATCHED
from tests.images import pixels, png_size


STEP_TAGS = ("loss", "accuracy", "learning_rate", "perf/images_per_second")


def test_train_scalars_every_log_step_and_epoch(run_root):
    runs, results = run_root
    history = results["history"]
    train = events.scalars(str(runs / "watched" / run_folder.TRAIN_LOGS))
    # 120 images / 16 = 7 steps an epoch; logged every 3 steps. (Their values:
    # test_logged_values.py.)
    for tag in STEP_TAGS:
        assert [step for step, _ in train[tag]] == [3, 6, 9, 12], tag
    np.testing.assert_allclose([value for _, value in train["learning_rate"]], 3e-3, rtol=1e-6)
    assert all(value > 0 for _, value in train["perf/images_per_second"])
    for tag, key in (*((f"epoch_{metric.name}", metric.name) for metric in metrics.TRAINING),
                     ("perf/epoch_seconds", "seconds")):
        assert [step for step, _ in train[tag]] == [1, 2], tag
        np.testing.assert_allclose([v for _, v in train[tag]], history[key], rtol=1e-6)


def test_validation_scalars_and_images_each_epoch(run_root):
    runs, results = run_root
    validation = events.read(str(runs / "watched" / run_folder.VALIDATION_LOGS))
    for metric in metrics.EVALUATION:
        tag, key = f"epoch_{metric.name}", f"val_{metric.name}"
        plugin, values = validation[tag]
        assert plugin == "scalars"
        assert [step for step, _ in values] == [1, 2]
        np.testing.assert_allclose([float(v) for _, v in values], results["history"][key],
                                   rtol=1e-6)
    # figsize (plots.py) x 100 dpi: a 3 x 3 grid of 1.5 x 1.6 inch cells; the compact matrix.
    for tag, size in (("predictions", (450, 480)), ("confusion_matrix", (460, 440))):
        plugin, values = validation[tag]
        assert plugin == "images"
        assert [step for step, _ in values] == [1, 2]
        width, height, png = values[-1][1]  # An image summary holds width, height, PNG.
        assert png_size(png) == (int(width), int(height)) == size
        assert pixels(png).std() > 10  # Not blank.


def test_histograms_hold_the_weights_and_gradients_of_each_epoch(run_root):
    runs, _ = run_root
    train = events.read(str(runs / "watched" / run_folder.TRAIN_LOGS))
    histograms = {tag: values for tag, (plugin, values) in train.items()
                  if plugin == "histograms"}
    model = keras.models.load_model(runs / "watched" / run_folder.MODEL)  # After epoch 2.
    training = dataset.load(str(runs.parent / "data")).train
    count = learner.HISTOGRAM_BATCH
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
            tf.one_hot(training.labels[:count], training.num_classes),
            model(training.images[:count], training=False)))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert len(histograms) == 16  # Weights and gradients of a kernel and a bias, 4 layers.
    for variable, gradient in zip(model.trainable_variables, gradients):
        for kind, values in (("weights", variable.numpy()), ("gradients", gradient.numpy())):
            [tag] = [tag for tag in histograms
                     if tag.startswith(f"{kind}/") and tag.endswith(f"/{variable.path}")]
            assert [step for step, _ in histograms[tag]] == [1, 2]
            buckets = histograms[tag][-1][1]  # Rows of (left edge, right edge, count).
            assert buckets[:, 2].sum() == values.size, tag
            np.testing.assert_allclose([buckets[0, 0], buckets[-1, 1]],
                                       [values.min(), values.max()], rtol=1e-4, err_msg=tag)


def test_validation_overlays_training_at_the_global_step_of_each_epoch(run_root):
    runs, results = run_root
    validation = events.scalars(str(runs / "watched" / run_folder.VALIDATION_LOGS))
    # 7 steps an epoch: the epochs end at global steps 7 and 14.
    assert validation["accuracy"] == [(7, pytest.approx(results["history"]["val_accuracy"][0])),
                                      (14, pytest.approx(results["history"]["val_accuracy"][1]))]
    assert [step for step, _ in validation["loss"]] == [7, 14]
    assert [value for _, value in validation["best_epoch_accuracy"]] == pytest.approx(
        np.maximum.accumulate(results["history"]["val_accuracy"]))


def test_every_scalar_says_what_it_measures_and_speed_sits_apart(run_root):
    runs, _ = run_root
    train = events.descriptions(str(runs / "watched" / run_folder.TRAIN_LOGS))
    validation = events.descriptions(str(runs / "watched" / run_folder.VALIDATION_LOGS))
    held = events.descriptions(str(runs / "held" / run_folder.VALIDATION_LOGS))
    for tag in ("loss", "accuracy"):
        assert "mean of the steps since the last point" in train[tag], tag
        assert "mean over the epoch" in train[f"epoch_{tag}"], tag
    for tag in ("learning_rate", "perf/images_per_second", "perf/epoch_seconds"):
        assert train[tag], tag
    assert "the test set" in validation["accuracy"]
    assert re.search(r", on \d+ held-out training images", held["accuracy"])
    assert not [tag for tag in train if "second" in tag and not tag.startswith("perf/")]


def test_hparams_declare_what_is_computed_and_the_test_metrics_first(run_root):
    runs, _ = run_root
    hparams, declared = events.hparams_experiment(str(runs / "held"))
    computed = [field.name for field in dataclasses.fields(Config)
                if field.metadata["kind"] == COMPUTES]
    assert hparams == computed
    assert {"validation_split", "model", "seed", "learning_rate"} <= set(hparams)
    assert not {"data_dir", "model_dir", "checkpoint", "force", "mode", "gpus",
                "profile_steps", "histograms"} & set(hparams)
    assert declared[:2] == [("", "test_accuracy"), ("", "test_loss")]
    tests = [("", f"test_{metric.name}") for metric in metrics.EVALUATION]
    validations = [("validation", f"epoch_{metric.name}") for metric in metrics.EVALUATION]
    assert sorted(declared) == sorted(tests + validations + [("validation",
                                                              "best_epoch_accuracy")])
    assert declared.index(("validation", "epoch_accuracy")) == len(tests)  # After the tests.


def test_hparams_test_results_and_graph_in_the_run_itself(run_root):
    runs, results = run_root
    for config in (WATCHED, HELD):
        assert events.hparams_values(str(runs / config.run_name)) == {
            field.name: getattr(config, field.name) for field in dataclasses.fields(Config)
            if field.metadata["kind"] == COMPUTES}, config.run_name
    run = events.scalars(str(runs / "watched"))
    for tag in ("test_accuracy", "test_loss"):
        assert run[tag] == [(14, pytest.approx(results[tag], rel=1e-6))]
    graphs = [event.graph_def for name in os.listdir(runs / "watched") if "tfevents" in name
              for event in tf.compat.v1.train.summary_iterator(str(runs / "watched" / name))
              if event.graph_def]
    assert len(graphs) == 1  # The model's, alone: no graph of a caller beside it.
    assert b"simple-cnn" in graphs[0] and b"Conv2D" in graphs[0]


def test_the_profile_holds_the_chosen_steps(run_root):
    runs, _ = run_root
    [profile] = (runs / "watched" / run_folder.TRAIN_LOGS).glob("plugins/profile/*/*.xplane.pb")
    # No event in a trace names the training step; their order tells them apart. With
    # --profile_steps=2,4, one step per call (--steps_per_loop=1) and a log every 3
    # steps: the calls of steps 2 and 3, the step summaries of step 3, then step 4's call.
    assert events.profiled_calls(str(profile)) == [
        "train_steps", "train_steps", *["WriteSummary"] * len(STEP_TAGS), "train_steps"]


# Pixels of the run folder's figures: their figsize in plots.py x 100 dpi (plots.to_png).
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url, body=None):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_a_real_tensorboard_serves_the_run(run_root):
    runs, results = run_root
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", f"--logdir={runs}", "--host=127.0.0.1",
         f"--port={port}", "--load_fast=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                scalars = _get(f"{base}/data/plugin/scalars/tags")
                if "watched/validation" in scalars:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert "loss" in scalars["watched/train"]
        for metric in metrics.EVALUATION:
            assert f"epoch_{metric.name}" in scalars["watched/validation"], metric.name
            served = _get(f"{base}/data/plugin/scalars/scalars?run=watched%2Fvalidation"
                          f"&tag=epoch_{metric.name}")  # [[wall time, step, value], ...]
            assert [(step, value) for _, step, value in served] == [
                (epoch, pytest.approx(mean, rel=1e-6))
                for epoch, mean in enumerate(results["history"][f"val_{metric.name}"], 1)]
        images = _get(f"{base}/data/plugin/images/tags")
        assert {"predictions", "confusion_matrix"} <= set(images["watched/validation"])
        experiment = _get(f"{base}/data/plugin/hparams/experiment",
                          json.dumps({"experimentName": ""}).encode())
        names = {info["name"] for info in experiment["hparamInfos"]}
        assert names == {field.name for field in dataclasses.fields(Config)
                         if field.metadata["kind"] == COMPUTES}
        declared = [info["name"]["tag"] for info in experiment["metricInfos"]]
        assert declared[:2] == ["test_accuracy", "test_loss"]
        assert {f"test_{metric.name}" for metric in metrics.EVALUATION} <= set(declared)
        sessions = _get(f"{base}/data/plugin/hparams/session_groups", json.dumps(
            {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN"],
             "colParams": [], "startIndex": 0, "sliceSize": 10}).encode())
        groups = {group["name"]: group for group in sessions["sessionGroups"]}
        assert sorted(groups) == ["held", "watched"]
        assert groups["held"]["hparams"]["seed"] == HELD.seed
        test_accuracy = [metric["value"] for metric in groups["watched"]["metricValues"]
                         if metric["name"]["tag"] == "test_accuracy"]
        assert test_accuracy == [pytest.approx(results["test_accuracy"], rel=1e-6)]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_tags_logged_by_epoch_are_those_a_resume_cuts_by_epoch(run_root):
    """summaries.EPOCH_TAGS names them for forget_logs_after: every other tag is
    logged at global steps (every 3rd here), never at exactly epochs 1 and 2."""
    runs, _ = run_root
    for logs in (run_folder.TRAIN_LOGS, run_folder.VALIDATION_LOGS):
        for tag, (_, values) in events.read(str(runs / "watched" / logs)).items():
            by_epoch = [step for step, _ in values] == [1, 2]
            assert tag.startswith(summaries.EPOCH_TAGS) == by_epoch, (logs, tag)
