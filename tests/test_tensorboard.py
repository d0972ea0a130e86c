"""What TensorBoard and the figures show, read back from the files."""

import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from cifar10_research import loop, run_folder
from cifar10_research.config import Config
from tests import events, fake_cifar
from tests.conftest import one_device, run_python


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; fails on anything but a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    """A root holding one 2-epoch run with histograms and a profile."""
    root = tmp_path_factory.mktemp("tensorboard")
    fake_cifar.write_folder(str(root / "data"))
    config = Config(epochs=2, batch_size=16, learning_rate=3e-3, data_dir=str(root / "data"),
                    log_every_n_steps=3, run_name="watched", histograms=True,
                    profile_steps="2,4")
    results = loop.train_and_evaluate(config, str(root / "runs" / "watched"),
                                      strategy=one_device())
    return root / "runs", results


def test_train_scalars_every_log_step_and_epoch(run_root):
    runs, results = run_root
    train = events.scalars(str(runs / "watched" / run_folder.TRAIN_LOGS))
    for tag in ("loss", "accuracy", "learning_rate", "images_per_second"):
        assert [step for step, _ in train[tag]] == [3, 6, 9, 12], tag
    np.testing.assert_allclose([value for _, value in train["learning_rate"]], 3e-3, rtol=1e-6)
    assert all(value > 0 for _, value in train["images_per_second"])
    np.testing.assert_allclose([v for _, v in train["epoch_accuracy"]],
                               results["history"]["accuracy"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in train["epoch_seconds"]],
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


def test_hparams_test_results_and_graph_in_the_run_itself(run_root):
    runs, results = run_root
    run = events.read(str(runs / "watched"))
    assert run["_hparams_/session_start_info"][0] == "hparams"
    assert events.scalars(str(runs / "watched"))["test_accuracy"] == [
        (2, pytest.approx(results["test_accuracy"], rel=1e-6))]
    graph_files = [name for name in os.listdir(runs / "watched") if "tfevents" in name]
    graph = b"".join((runs / "watched" / name).read_bytes() for name in graph_files)
    assert b"simple-cnn" in graph and b"Conv2D" in graph


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
    history = {key: [value * 0.9 for value in values]
               for key, values in results["history"].items()}
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
        assert {"batch_size", "learning_rate", "epochs", "seed"} <= names
        metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert {"test_accuracy", "test_loss"} <= metrics
    finally:
        server.terminate()
        server.wait(timeout=30)
