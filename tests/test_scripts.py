"""scripts/plot_run.py and scripts/benchmark.py, run as a user runs them."""

import io
import json
import statistics

import matplotlib.image
import numpy as np
import pytest

from cifar10_research import plots, run_folder
from tests.conftest import run_python

pytestmark = pytest.mark.slow


def run_script(name, *args):
    return run_python(f"scripts/{name}", *args)


def test_plot_run_redraws_the_runs_own_curves(tmp_path):
    history = {"loss": [1.5, 1.2], "accuracy": [0.45, 0.58], "val_loss": [1.3, 1.1],
               "val_accuracy": [0.54, 0.61], "seconds": [20.0, 14.0]}
    (tmp_path / run_folder.HISTORY).write_text(json.dumps(history))
    result = run_script("plot_run.py", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for metric, name in (("accuracy", run_folder.ACCURACY_PLOT), ("loss", run_folder.LOSS_PLOT)):
        assert f"Wrote {tmp_path / name}" in result.stdout.splitlines()
        drawn = matplotlib.image.imread(tmp_path / name)
        saved = run_folder.read_history(str(tmp_path))
        expected = matplotlib.image.imread(io.BytesIO(plots.to_png(plots.curves(saved, metric))))
        np.testing.assert_array_equal(drawn, expected)  # The figure a run draws, redrawn.


def test_plot_run_names_a_folder_without_history(tmp_path):
    result = run_script("plot_run.py", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: cannot read {tmp_path}/history.json (No such file or directory): pass "
        f"the folder of a run that finished at least one epoch"]


def test_benchmark_reports_every_figure_as_json(tiny_data_dir):
    result = run_script("benchmark.py", f"--data_dir={tiny_data_dir}", "--batch_size=8",
                        "--steps=10", "--rounds=2", "--steps_per_loop=5,1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert len(figures["fit_images_per_s"]) == len(figures["train_images_per_s"]) == 2
    assert figures["steps_per_loop"] == 5
    assert len(figures["other_steps_per_loop_images_per_s"]["1"]) == 2
    for key in ("train_vs_fit_ratio", "pipeline_vs_train_ratio", "eval_images_per_s",
                "peak_rss_gib"):
        assert figures[key] > 0, key
    for clock in ("", "_cpu"):
        ratios = figures[f"train_vs_fit{clock}_ratios"]
        assert ratios == pytest.approx(
            [ours / fit for ours, fit in zip(figures[f"train{clock}_images_per_s"],
                                             figures[f"fit{clock}_images_per_s"])])
        assert figures[f"train_vs_fit{clock}_ratio"] == statistics.median(ratios)
    # Measured on their own clock: CPU time differs from wall time (by the cores
    # used and the share of them the process got).
    assert all(cpu > 0 for cpu in figures["train_cpu_images_per_s"])
    assert figures["train_cpu_images_per_s"] != figures["train_images_per_s"]


def test_benchmark_compares_keras_batch_norm_with_the_fused_one_and_none():
    result = run_script("benchmark.py", "--batch_norm", "--model=fast_cnn", "--steps=10",
                        "--rounds=2", "--batch_size=8", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert (figures["model"], figures["batch_size"], figures["steps_per_round"]) == (
        "fast_cnn", 8, 10)
    for clock in ("wall", "cpu"):
        rates = figures[f"{clock}_images_per_s"]
        assert set(rates) == {"keras", "fused", "none"}
        assert all(len(values) == 2 and min(values) > 0 for values in rates.values()), clock
        for ratio, (ours, theirs) in (("fused_vs_keras", ("fused", "keras")),
                                      ("fused_vs_none", ("fused", "none"))):
            assert figures["ratios"][ratio][clock] == pytest.approx(
                [a / b for a, b in zip(rates[ours], rates[theirs])])
            assert figures["median_ratios"][ratio][clock] == statistics.median(
                figures["ratios"][ratio][clock])
    assert figures["load_average_before"] >= 0 and figures["load_average_after"] >= 0


def test_benchmark_times_the_tutorials_fit_and_a_recipe(tiny_data_dir, tmp_path):
    recipe = tmp_path / "quick.flags"
    recipe.write_text("--epochs=1\n--batch_size=16\n")
    result = run_script("benchmark.py", "--time_to_accuracy", f"--data_dir={tiny_data_dir}",
                        f"--recipe={recipe}", "--rounds=2", "--fit_epochs=1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("fit_seconds", "fit_cpu_seconds", "fit_test_accuracy", "recipe_seconds",
                "recipe_cpu_seconds", "recipe_command_seconds", "recipe_test_accuracy",
                "time_to_accuracy_ratios", "time_to_accuracy_cpu_ratios"):
        assert len(figures[key]) == 2, key
    assert all(0 <= accuracy <= 1 for accuracy in figures["recipe_test_accuracy"])
    pairs = zip(figures["recipe_seconds"], figures["recipe_command_seconds"])
    assert all(ours < whole for ours, whole in pairs)
    for clock, ratio in (("seconds", ""), ("cpu_seconds", "_cpu")):
        assert min(figures[f"recipe_{clock}"]) > 0 and min(figures[f"fit_{clock}"]) > 0
        assert figures[f"time_to_accuracy{ratio}_ratios"] == pytest.approx(
            [fit / ours for fit, ours in zip(figures[f"fit_{clock}"], figures[f"recipe_{clock}"])])
        assert figures[f"time_to_accuracy{ratio}_ratio"] == statistics.median(
            figures[f"time_to_accuracy{ratio}_ratios"])


def test_benchmark_refuses_time_to_accuracy_on_random_images():
    result = run_script("benchmark.py", "--time_to_accuracy")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: --time_to_accuracy needs --data_dir: accuracy on random images means nothing"]


def test_compare_runs_refuses_an_output_that_is_a_folder(tmp_path):
    history = {"loss": [1.5], "accuracy": [0.45], "val_loss": [1.3], "val_accuracy": [0.54],
               "seconds": [20.0]}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / run_folder.HISTORY).write_text(json.dumps(history))
    result = run_script("compare_runs.py", str(tmp_path / "run"), f"--output={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: --output={tmp_path} is a folder: pass the PNG file to write, e.g. "
        f"{tmp_path}/comparison.png"]
    assert json.loads((tmp_path / "run" / run_folder.HISTORY).read_text()) == history
