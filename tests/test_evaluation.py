"""`train.py --mode=eval` through the command line, as a user runs it."""

import json

import pytest

from cifar10_research import loop, run_folder
from cifar10_research.config import Config
from tests.conftest import one_device, run_python

pytestmark = pytest.mark.slow


def eval_command(tmp_path, *flags):
    return run_python("train.py", "--mode=eval", f"--model_dir={tmp_path}", *flags)


def test_eval_mode_takes_the_network_from_the_runs_flags(tiny_data_dir, tmp_path):
    config = Config(epochs=1, batch_size=16, data_dir=tiny_data_dir, model="wide_cnn",
                    run_name="wide")
    trained = loop.train_and_evaluate(config, str(tmp_path / "wide"), strategy=one_device())
    result = eval_command(tmp_path, "--run_name=wide", f"--data_dir={tiny_data_dir}",
                          "--batch_size=16")
    assert result.returncode == 0, result.stderr
    assert f"Test accuracy: {trained['test_accuracy']:.4f}" in result.stdout
    results = json.loads((tmp_path / "wide" / run_folder.EVAL_RESULTS).read_text())
    assert results["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    assert results["test_count"] == 24


def test_eval_mode_of_a_run_without_checkpoints_reads_no_data(tmp_path):
    result = eval_command(tmp_path, "--run_name=never", f"--data_dir={tmp_path / 'data'}")
    assert result.returncode == 1
    assert result.stderr == (f"error: {tmp_path}/never/checkpoints holds no checkpoint: train "
                             f"the run first, or pass --checkpoint\n")
    assert not (tmp_path / "data").exists()


def test_eval_mode_names_a_checkpoint_file_given_for_its_prefix(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "ckpt-3"
    result = eval_command(tmp_path, "--run_name=run", f"--checkpoint={checkpoint}.index")
    assert result.returncode == 1
    assert result.stderr == (f"error: --checkpoint={checkpoint}.index names one of a "
                             f"checkpoint's files: pass the checkpoint itself, {checkpoint}\n")


def test_eval_mode_needs_a_run_name(tmp_path):
    result = eval_command(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "FATAL Flags parsing error: flags mode=eval, run_name=: --mode=eval needs --run_name: "
        "the run folder to evaluate")
