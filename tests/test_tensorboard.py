"""What TensorBoard and the figures show, read back from the files."""

import dataclasses
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from cifar10_research import loop, run_folder
from cifar10_research.config import COMPUTES, Config
from tests import events, fake_cifar
from tests.conftest import one_device, run_python


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails on anything but a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    """A root holding two 2-epoch runs, as a researcher compares them: "watched",
    validated on the test set, with histograms and a profile; "held", of another
    seed, validated on a quarter of the training images held out."""
    root = tmp_path_factory.mktemp("tensorboard")
    fake_cifar.write_folder(str(root / "data"))
    config = Config(epochs=2, batch_size=16, learning_rate=3e-3, data_dir=str(root / "data"),
                    log_every_n_steps=3, run_name="watched", histograms=True,
                    profile_steps="2,4")
    results = loop.train_and_evaluate(config, str(root / "runs" / "watched"),
                                      strategy=one_device())
    loop.train_and_evaluate(config.replace(run_name="held", seed=1, validation_split=0.25,
                                           histograms=False, profile_steps=""),
                            str(root / "runs" / "held"), strategy=one_device())
    return root / "runs", results


def test_train_scalars_every_log_step_and_epoch(run_root):
    runs, results = run_root
    train = events.scalars(str(runs / "watched" / run_folder.TRAIN_LOGS))
    for tag in ("loss", "accuracy", "learning_rate", "perf/images_per_second"):
        assert [step for step, _ in train[tag]] == [3, 6, 9, 12], tag
    np.testing.assert_allclose([value for _, value in train["learning_rate"]], 3e-3, rtol=1e-6)
    assert all(value > 0 for _, value in train["perf/images_per_second"])
    np.testing.assert_allclose([v for _, v in train["epoch_accuracy"]],
                               results["history"]["accuracy"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in train["perf/epoch_seconds"]],
                               results["history"]["seconds"], rtol=1e-6)


def test_validation_scalars_and_images_each_epoch(run_root):
    runs, results = run_root
    validation = events.read(str(runs / "watched" / run_folder.VALIDATION_LOGS))
    accuracy_plugin, accuracy = validation["epoch_accuracy"]
    assert accuracy_plugin == "scalars"
    np.testing.assert_allclose([float(v) for _, v in accuracy],
                               results["history"]["val_accuracy"], rtol=1e-6)
    for tag in ("predictions", "confusion_matrix"):
        plugin, values = validation[tag]
        assert plugin == "images"
        assert [step for step, _ in values] == [1, 2]
        width, height, png = values[-1][1]  # An image summary holds width, height, PNG.
        assert png_size(png) == (int(width), int(height))
        assert int(width) >= 300 and int(height) >= 300


def test_histograms_of_weights_and_gradients_each_epoch(run_root):
    runs, _ = run_root
    train = events.read(str(runs / "watched" / run_folder.TRAIN_LOGS))
    histograms = {tag: values for tag, (plugin, values) in train.items()
                  if plugin == "histograms"}
    weights = [tag for tag in histograms if tag.startswith("weights/")]
    gradients = [tag for tag in histograms if tag.startswith("gradients/")]
    assert len(weights) == len(gradients) == 8  # A kernel and a bias for 4 layers.
    assert all([step for step, _ in histograms[tag]] == [1, 2] for tag in weights + gradients)


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
    for tag in ("loss", "accuracy", "epoch_loss", "epoch_accuracy", "learning_rate",
                "perf/images_per_second", "perf/epoch_seconds"):
        assert train[tag], tag
    assert "the test set" in validation["accuracy"]
    assert re.match(r"\d+ held-out training images", held["accuracy"])
    assert not [tag for tag in train if "second" in tag and not tag.startswith("perf/")]


def test_hparams_declare_what_is_computed_and_the_test_metrics_first(run_root):
    runs, _ = run_root
    hparams, metrics = events.hparams_experiment(str(runs / "held"))
    computed = [field.name for field in dataclasses.fields(Config)
                if field.metadata["kind"] == COMPUTES]
    assert hparams == computed
    assert {"validation_split", "model", "seed", "learning_rate"} <= set(hparams)
    assert not {"data_dir", "model_dir", "checkpoint", "force", "mode", "gpus",
                "profile_steps", "histograms"} & set(hparams)
    assert metrics == [("", "test_accuracy"), ("", "test_loss"),
                       ("validation", "epoch_accuracy"), ("validation", "best_epoch_accuracy"),
                       ("validation", "epoch_loss")]


def test_hparams_test_results_and_graph_in_the_run_itself(run_root):
    runs, results = run_root
    run = events.read(str(runs / "watched"))
    assert run["_hparams_/session_start_info"][0] == "hparams"
    assert events.scalars(str(runs / "watched"))["test_accuracy"] == [
        (14, pytest.approx(results["test_accuracy"], rel=1e-6))]
    graphs = [event.graph_def for name in os.listdir(runs / "watched") if "tfevents" in name
              for event in tf.compat.v1.train.summary_iterator(str(runs / "watched" / name))
              if event.graph_def]
    assert len(graphs) == 1  # The model's, alone: no graph of a caller beside it.
    assert b"simple-cnn" in graphs[0] and b"Conv2D" in graphs[0]


def test_the_profile_of_the_chosen_steps_is_written(run_root):
    runs, _ = run_root
    profiles = [name for _, _, names in os.walk(runs / "watched" / run_folder.TRAIN_LOGS)
                for name in names if name.endswith(".xplane.pb")]
    assert profiles


def test_the_run_folder_figures_are_pngs_of_sensible_size(run_root):
    runs, _ = run_root
    for name in (run_folder.ACCURACY_PLOT, run_folder.LOSS_PLOT, run_folder.CONFUSION_PLOT,
                 run_folder.PREDICTIONS_PLOT, run_folder.SAMPLE_PLOT):
        width, height = png_size((runs / "watched" / name).read_bytes())
        assert 250 <= width <= 1500 and 250 <= height <= 1500, name


@pytest.mark.slow
def test_compare_runs_overlays_several_runs(run_root, tmp_path):
    runs, results = run_root
    other = tmp_path / "other"
    other.mkdir()
    history = {key: [value * 0.9 for value in results["history"][key]]
               for key in run_folder.HISTORY_KEYS}
    (other / run_folder.HISTORY).write_text(json.dumps(history))
    output = tmp_path / "comparison.png"
    result = run_python("scripts/compare_runs.py", str(runs / "watched"), str(other),
                        f"--output={output}")
    assert result.returncode == 0, result.stderr
    width, height = png_size(output.read_bytes())
    assert width > height >= 300


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
    runs, _ = run_root
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
        assert "epoch_accuracy" in scalars["watched/validation"]
        assert "loss" in scalars["watched/train"]
        images = _get(f"{base}/data/plugin/images/tags")
        assert {"predictions", "confusion_matrix"} <= set(images["watched/validation"])
        experiment = _get(f"{base}/data/plugin/hparams/experiment",
                          json.dumps({"experimentName": ""}).encode())
        names = {info["name"] for info in experiment["hparamInfos"]}
        assert names == {field.name for field in dataclasses.fields(Config)
                         if field.metadata["kind"] == COMPUTES}
        metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
        assert metrics[:2] == ["test_accuracy", "test_loss"]
        sessions = _get(f"{base}/data/plugin/hparams/session_groups", json.dumps(
            {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN"],
             "colParams": [], "startIndex": 0, "sliceSize": 10}).encode())
        assert sorted(group["name"] for group in sessions["sessionGroups"]) == [
            "held", "watched"]
    finally:
        server.terminate()
        server.wait(timeout=30)
