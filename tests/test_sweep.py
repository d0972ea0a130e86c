import os
import re
import shlex
import signal
import sys
import time

import pytest

from cifar10_research import run_folder
from cifar10_research.errors import UserError
from cifar10_research import sweeping
from tests import processes
from tests.conftest import ROOT, run_python


VAL_DATA = "5,000 held-out training images"


def _write_run(workdir, val_accuracy, test_accuracy=0.5, seconds=10.0, finished=True):
    """A run folder's history.json and, if `finished`, results.json."""
    epochs = len(val_accuracy)
    history = {"loss": [1.0] * epochs, "accuracy": [0.5] * epochs, "val_loss": [1.1] * epochs,
               "val_accuracy": val_accuracy, "seconds": [seconds] * epochs,
               "val_data": VAL_DATA}
    os.makedirs(workdir, exist_ok=True)
    run_folder.write_history(str(workdir), history)
    if finished:
        for name in run_folder.ARTIFACTS:  # Stand-ins: the sweep only checks they exist.
            os.makedirs(os.path.dirname(os.path.join(workdir, name)), exist_ok=True)
            open(os.path.join(workdir, name), "w").close()
        run_folder.write_json(os.path.join(workdir, run_folder.RESULTS), {
            "test_accuracy": test_accuracy, "val_accuracy": val_accuracy[-1],
            "val_data": VAL_DATA})


def _run_sweep(*args):
    return run_python("scripts/sweep.py", *args)


def test_parses_recipes_in_order():
    assert sweeping.parse_recipes(["tutorial: --epochs=10 --batch_size=64", "plain:"]) == {
        "tutorial": ["--epochs=10", "--batch_size=64"], "plain": []}


def test_a_recipe_file_is_named_by_its_file_and_gives_its_flag_lines(tmp_path):
    (tmp_path / "quick.flags").write_text("# Two epochs.\n--epochs=2\n\n  --seed=3\n")
    assert sweeping.parse_recipes([str(tmp_path / "quick.flags"), "plain:"]) == {
        "quick": ["--epochs=2", "--seed=3"], "plain": []}
    with pytest.raises(UserError, match=r"cannot read the recipe .*missing.flags \(No such "
                                        r"file or directory\): pass a flagfile"):
        sweeping.parse_recipes([str(tmp_path / "missing.flags")])


@pytest.mark.parametrize("texts, message", [
    (["--epochs=10"], 'is not "NAME: FLAGS"'),
    (["two words: --epochs=1"], 'is not "NAME: FLAGS"'),
    (["a: --epochs=1", "a: --epochs=2"], "two recipes are named a"),
])
def test_refuses_malformed_recipes(texts, message):
    with pytest.raises(UserError, match=message):
        sweeping.parse_recipes(texts)


def test_a_seed_given_twice_is_refused():
    sweeping.refuse_repeated_seeds([0, 1, 2])
    with pytest.raises(UserError) as refused:
        sweeping.refuse_repeated_seeds([0, 1, 0, 2, 1])
    assert str(refused.value) == ("--seeds names 0, 1 more than once: a run counted twice would "
                                  "shrink the std; give each seed once")


def test_a_run_is_train_py_with_the_recipe_then_the_shared_flags_then_its_own():
    command = sweeping.run_command(["--epochs=30", "--augment=flip_crop"], 2, "improved",
                                   "sweeps", ["--data_dir=data"])
    assert command == [sys.executable, os.path.join(ROOT, "train.py"), "--epochs=30",
                       "--augment=flip_crop", "--data_dir=data", "--seed=2",
                       "--run_name=improved-seed2", "--model_dir=sweeps"]


def test_the_expected_epochs_are_the_last_given_or_train_py_default():
    assert sweeping.expected_epochs(["train.py", "--epochs=30", "--epochs=2"]) == 2
    assert sweeping.expected_epochs(["train.py", "--batch_size=32"]) == 10


def test_only_a_run_with_all_its_epochs_and_its_results_is_finished(tmp_path):
    _write_run(tmp_path / "run", [0.5, 0.6])
    _write_run(tmp_path / "unfinished", [0.5, 0.6], finished=False)
    assert sweeping.is_finished(str(tmp_path / "run"), 2)
    assert not sweeping.is_finished(str(tmp_path / "run"), 3)
    assert not sweeping.is_finished(str(tmp_path / "unfinished"), 2)
    assert not sweeping.is_finished(str(tmp_path / "missing"), 2)


def test_the_table_ranks_by_validation_and_reports_test_beside_it(tmp_path):
    recipes = {"tutorial": ["--epochs=2"], "improved": ["--epochs=3", "--augment=flip"]}
    for seed, final in enumerate([0.60, 0.62, 0.64]):
        # The test accuracy says the opposite of validation: it must not rank.
        _write_run(tmp_path / f"tutorial-seed{seed}", [0.5, final], 0.9, seconds=20.0)
        _write_run(tmp_path / f"improved-seed{seed}", [0.5, 0.6, final + 0.1],
                   0.7 + seed / 100, 30.0)
    runs = sweeping.read_runs(str(tmp_path), recipes, [0, 1, 2])
    assert sweeping.results_table(recipes, runs).splitlines() == [
        "| rank | recipe | flags | seeds | validated on | validation accuracy (mean ± std) "
        "| test accuracy (mean ± std) | seconds per run |",
        "|---|---|---|---|---|---|---|---|",
        f"| 1 | improved | `--epochs=3 --augment=flip` | 3 | {VAL_DATA} | 0.7200 ± 0.0200 | "
        f"0.7100 ± 0.0100 | 90 |",
        f"| 2 | tutorial | `--epochs=2` | 3 | {VAL_DATA} | 0.6200 ± 0.0200 | "
        f"0.9000 ± 0.0000 | 40 |"]


def test_one_seed_has_no_std(tmp_path):
    _write_run(tmp_path / "plain-seed5", [0.61234], 0.59876)
    runs = sweeping.read_runs(str(tmp_path), {"plain": []}, [5])
    assert sweeping.results_table({"plain": []}, runs).splitlines()[-1] == (
        f"| 1 | plain | (defaults) | 1 | {VAL_DATA} | 0.6123 ± n/a | 0.5988 ± n/a | 10 |")


COMPARED = ("| rank | recipe | validation accuracy minus the baseline's | on validation "
            "| test accuracy minus the baseline's | on test |")


def _write_runs(root, accuracies):
    """{recipe: [(validation, test accuracy) of seed 0, 1, ...]} as finished runs."""
    for name, seed_accuracies in accuracies.items():
        for seed, (validation, test) in enumerate(seed_accuracies):
            _write_run(root / f"{name}-seed{seed}", [validation], test)


def _three_recipes(root):
    """The runs of test_each_recipe_is_compared_with_the_first_paired_by_seed."""
    _write_runs(root, {"tutorial": [(0.60, 0.60), (0.62, 0.61), (0.64, 0.62)],
                       "improved": [(0.65, 0.57), (0.66, 0.59), (0.70, 0.60)],
                       "tied": [(0.61, 0.60), (0.61, 0.61), (0.65, 0.62)]})
    recipes = {"tutorial": [], "improved": [], "tied": []}
    return sweeping.read_runs(str(root), recipes, [0, 1, 2])


def test_each_recipe_is_compared_with_the_first_paired_by_seed(tmp_path):
    # t_{0.975, 2} = 4.302653; half-width = t * sd(d) / sqrt(3).
    # improved, validation: d = .05, .04, .06: mean .05, sd .01, half-width .024841:
    #   [.025159, .074841].
    #   test: d = -.03, -.02, -.02: mean -.023333, sd .005774, half-width .014342:
    #   [-.037675, -.008991].
    # tied, validation: d = .01, -.01, .01: mean .003333, sd .011547, half-width .028684:
    #   [-.025351, .032017].
    #   test: d = 0, 0, 0: mean 0, sd 0: the interval [0, 0] holds 0.
    assert sweeping.comparison(_three_recipes(tmp_path)).splitlines()[-5:] == [
        COMPARED, "|---|---|---|---|---|---|",
        "| 1 | improved | +0.0500 ± 0.0248 [+0.0252, +0.0748] | better than the baseline | "
        "-0.0233 ± 0.0143 [-0.0377, -0.0090] | worse than the baseline |",
        "| 2 | tied | +0.0033 ± 0.0287 [-0.0254, +0.0320] | not distinguishable from the "
        "baseline | +0.0000 ± 0.0000 [+0.0000, +0.0000] | not distinguishable from the "
        "baseline |",
        "| 3 | tutorial | — | the baseline | — | the baseline |"]


def test_the_comparison_pairs_runs_by_seed_not_by_their_order(tmp_path):
    runs = _three_recipes(tmp_path)
    in_order = sweeping.comparison(runs)
    runs["improved"] = dict(reversed(runs["improved"].items()))
    assert sweeping.comparison(runs) == in_order


def test_one_seed_compares_without_an_interval(tmp_path):
    _write_runs(tmp_path, {"plain": [(0.60, 0.50)], "other": [(0.65, 0.45)]})
    runs = sweeping.read_runs(str(tmp_path), {"plain": [], "other": []}, [0])
    assert sweeping.comparison(runs).splitlines()[-2:] == [
        "| 1 | other | +0.0500 ± n/a | n/a: one seed, the interval cannot be computed | "
        "-0.0500 ± n/a | n/a: one seed, the interval cannot be computed |",
        "| 2 | plain | — | the baseline | — | the baseline |"]


def test_an_unfinished_run_is_named(tmp_path):
    _write_run(tmp_path / "plain-seed0", [0.6], finished=False)
    with pytest.raises(UserError, match="plain-seed0 has no results.json: it has not finished"):
        sweeping.read_runs(str(tmp_path), {"plain": []}, [0])


@pytest.mark.slow
def test_a_resumed_sweep_reuses_finished_runs_and_writes_results(tmp_path):
    for seed in (0, 1):
        _write_run(tmp_path / f"quick-seed{seed}", [0.4, 0.5 + seed / 10], 0.3)
        _write_run(tmp_path / f"one-seed{seed}", [0.45], 0.3)
    result = _run_sweep("--seeds=0,1", f"--model_dir={tmp_path}",
                        "--recipe=quick: --epochs=2", "--recipe=one: --epochs=1", "--",
                        "--data_dir=nowhere")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Reusing the finished run") == 4
    results = (tmp_path / sweeping.RESULTS).read_text()
    assert (f"| 1 | quick | `--epochs=2` | 2 | {VAL_DATA} | 0.5500 ± 0.0707 | 0.3000 ± 0.0000 "
            f"| 20 |") in results
    # d = -0.05, -0.15: mean -0.1, sd 0.070711; t_{0.975, 1} = 12.706205:
    # half-width 12.706205 * 0.070711 / sqrt(2) = 0.635310.
    compared = ("| 2 | one | -0.1000 ± 0.6353 [-0.7353, +0.5353] | not distinguishable from "
                "the baseline | +0.0000 ± 0.0000 [+0.0000, +0.0000] | not distinguishable "
                "from the baseline |")
    assert "Against the baseline, quick (the first recipe given)" in results
    assert compared in results and compared in result.stdout.splitlines()
    assert "Ranked by validation accuracy" in results
    assert "Every run also got `--data_dir=nowhere`." in results
    png = (tmp_path / sweeping.CURVES).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


@pytest.mark.slow
def test_a_failed_run_ends_the_sweep_with_one_error_line(tmp_path):
    result = _run_sweep("--seeds=0", f"--model_dir={tmp_path}", "--recipe=bad: --epochs=1",
                        "--", "--no_such_flag=1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the run {tmp_path}/bad-seed0 failed with exit code 1 (its output is above): "
        f"fix the cause and rerun the sweep, which reuses finished runs")
    command = sweeping.run_command(["--epochs=1"], 0, "bad", str(tmp_path), ["--no_such_flag=1"])
    assert f"Running {shlex.join(command)}" in result.stdout
    assert not (tmp_path / sweeping.RESULTS).exists()


@pytest.mark.slow
def test_ctrl_c_stops_the_sweeps_run_once_and_the_rerun_resumes_it(tiny_data_dir, tmp_path):
    """The run gets the Ctrl-C once, through the sweep, as a terminal sends it to
    the sweep alone: it saves and stops; rerun, the sweep resumes it."""
    arguments = [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), "--seeds=0",
                 f"--model_dir={tmp_path}", "--recipe=long: --epochs=3 --batch_size=8", "--",
                 f"--data_dir={tiny_data_dir}"]
    env = {**os.environ, "PYTHONPATH": ROOT}  # This checkout's library, as run_python.
    sweep = processes.start(arguments, cwd=ROOT, env=env)
    state = tmp_path / "long-seed0" / run_folder.CHECKPOINTS / "checkpoint"
    while sweep.poll() is None and not state.exists():
        time.sleep(0.01)
    sweep.send_signal(signal.SIGINT)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130
    run_stop, sweep_stop = stderr.splitlines()
    assert re.fullmatch(r"Stopped by SIGINT after step \d+; saved .*ckpt-\d+\. Resume with: .*",
                        run_stop)
    assert sweep_stop == (f"Stopped by SIGINT during the run {tmp_path}/long-seed0: rerun the "
                          f"sweep to go on (it reuses finished runs and resumes this one)")
    rerun = processes.run(arguments, cwd=ROOT, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Resuming " in rerun.stdout and (tmp_path / sweeping.RESULTS).exists()
