"""`train.py --mode=eval`: through the command line, as a user runs it, and in-process
beside a run that replaces its checkpoints."""

import gc
import json
import os

import pytest
import tensorflow as tf
from tensorflow.python.checkpoint import functional_saver

from cifar10_research import evaluation, loop, run_folder
from cifar10_research.checkpoints import Checkpoints
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from tests.conftest import one_device, run_python, tiny_cifar, train_tiny


def eval_command(tmp_path, *flags):
    return run_python("train.py", "--mode=eval", f"--model_dir={tmp_path}", *flags)


@pytest.mark.slow
def test_eval_mode_takes_the_network_from_the_runs_flags(tiny_data_dir, tmp_path):
    config = Config(epochs=1, batch_size=16, data_dir=tiny_data_dir, model="wide_cnn",
                    run_name="wide")
    trained = loop.train_and_evaluate(config, str(tmp_path / "wide"), strategy=one_device())
    result = eval_command(tmp_path, "--run_name=wide", f"--data_dir={tiny_data_dir}",
                          "--batch_size=16")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # Not TensorFlow's warnings of values an evaluation leaves.
    assert f"Test accuracy: {trained['test_accuracy']:.4f}" in result.stdout
    results = json.loads((tmp_path / "wide" / run_folder.EVAL_RESULTS).read_text())
    assert results["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    assert results["test_count"] == 24


@pytest.mark.slow
def test_eval_mode_of_a_run_without_checkpoints_reads_no_data(tmp_path):
    result = eval_command(tmp_path, "--run_name=never", f"--data_dir={tmp_path / 'data'}")
    assert result.returncode == 1
    assert result.stderr == (f"error: {tmp_path}/never/checkpoints holds no checkpoint: train "
                             f"the run first, or pass --checkpoint\n")
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_eval_mode_names_a_checkpoint_file_given_for_its_prefix(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "ckpt-3"
    result = eval_command(tmp_path, "--run_name=run", f"--checkpoint={checkpoint}.index")
    assert result.returncode == 1
    assert result.stderr == (f"error: --checkpoint={checkpoint}.index names one of a "
                             f"checkpoint's files: pass the checkpoint itself, {checkpoint}\n")


@pytest.mark.slow
def test_eval_mode_needs_a_run_name(tmp_path):
    result = eval_command(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "FATAL Flags parsing error: flags mode=eval, run_name=: --mode=eval needs --run_name: "
        "the run folder to evaluate")


def evaluate(workdir, **settings):
    config = Config(batch_size=16, run_name="run", mode="eval").replace(**settings)
    return evaluation.evaluate_checkpoint(config, str(workdir), strategy=one_device(),
                                          cifar=tiny_cifar())


def replace_ckpt_16_by_17(folder):
    """What a run keeping 1 checkpoint does at its next save: ckpt-17 (the same
    weights here, renamed) replaces ckpt-16 in the index and on disk."""
    for name in os.listdir(folder):
        if name.startswith("ckpt-16."):
            os.rename(folder / name, folder / name.replace("ckpt-16", "ckpt-17"))
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-17"\n'
                                       'all_model_checkpoint_paths: "ckpt-17"\n')


# Where the checkpoint vanishes: before the read, or midway, after TensorFlow
# has read its index and before it reads the values.
VANISHING_POINTS = [(Checkpoints, "restore"), (functional_saver.MultiDeviceSaver, "restore")]


@pytest.mark.parametrize("owner, method", VANISHING_POINTS)
def test_eval_reads_the_newest_checkpoint_when_a_training_run_replaces_the_one_it_reads(
        tmp_path, monkeypatch, capsys, caplog, owner, method):
    workdir = tmp_path / "run"
    trained = train_tiny(workdir, keep_checkpoints=1)  # Only ckpt-16 is kept.
    folder = workdir / run_folder.CHECKPOINTS
    real_read = getattr(owner, method)

    def replaced_while_read(reader, path, *args, **kwargs):
        if str(getattr(path, "numpy", lambda: path)()).rstrip("'").endswith("ckpt-16"):
            replace_ckpt_16_by_17(folder)
        return real_read(reader, path, *args, **kwargs)

    monkeypatch.setattr(owner, method, replaced_while_read)
    capsys.readouterr()
    results = evaluate(workdir, keep_checkpoints=1)
    assert results["checkpoint"] == str(folder / "ckpt-17")
    assert results["test_accuracy"] == trained["test_accuracy"]
    gc.collect()  # TensorFlow warns of values a restore left unread when it is collected.
    assert capsys.readouterr().err == "" and "unrestored values" not in caplog.text


def test_unreadable_checkpoints_are_named_and_the_run_folder_kept(tmp_path):
    workdir = tmp_path / "run"
    train_tiny(workdir, keep_checkpoints=1)
    folder = workdir / run_folder.CHECKPOINTS
    with open(folder / "ckpt-16.data-00000-of-00001", "r+b") as file:
        file.truncate(100)
    with pytest.raises(UserError) as refused:
        evaluate(workdir)
    assert str(refused.value) == (
        f"no checkpoint in {folder} can be read (ckpt-16): they are damaged or incomplete; "
        f"train the run anew under another --run_name (this folder is left as it is)")
    assert tf.train.latest_checkpoint(str(folder)) == str(folder / "ckpt-16")
