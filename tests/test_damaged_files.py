"""Run folders whose files were deleted, damaged or edited by hand: each is repaired
or refused in one line naming the file, never restarted silently, in-process."""

import json
import os
import shutil

import pytest

import flags
from cifar10_research import run_folder
from cifar10_research.config import Config
from cifar10_research.errors import UserError
from tests.conftest import train_tiny


def checkpoint_names(workdir):
    return sorted(os.listdir(workdir / run_folder.CHECKPOINTS))


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A finished 1-epoch tiny run, trained once."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_tiny(workdir, epochs=1)
    return workdir


@pytest.fixture
def run_copy(one_epoch_run, tmp_path):
    """A copy of one_epoch_run, tmp_path/run, for a test to damage."""
    return shutil.copytree(one_epoch_run, tmp_path / "run")


@pytest.mark.parametrize("damage", [os.remove, lambda path: open(path, "w").write("garbage {")])
def test_a_lost_checkpoint_index_is_rebuilt_and_the_run_resumes_checked(tmp_path, capsys,
                                                                        damage):
    workdir = tmp_path / "run"
    train_tiny(workdir, epochs=1, checkpoint_every_n_steps=3)  # ckpt-3, ckpt-6, ckpt-8.
    damage(str(workdir / run_folder.CHECKPOINTS / "checkpoint"))
    (workdir / run_folder.CHECKPOINTS / "ckpt-9_temp").mkdir()  # A save cut short.
    capsys.readouterr()
    with pytest.raises(UserError, match=r"was started with other settings: --epochs \(was 1, "
                                        r"now 2\)"):
        train_tiny(workdir, checkpoint_every_n_steps=3)  # Refused: the folder left as it is.
    assert "ckpt-9_temp" in checkpoint_names(workdir)
    results = train_tiny(workdir, checkpoint_every_n_steps=3, force=True)
    folder = workdir / run_folder.CHECKPOINTS
    captured = capsys.readouterr()
    assert captured.err == (
        f"warning: {folder}/checkpoint, the index of the checkpoints, was missing or "
        f"unreadable: rebuilt it from the 3 checkpoints there, the latest {folder}/ckpt-8\n")
    assert "ckpt-9_temp" not in checkpoint_names(workdir)
    assert "ckpt-8: epoch 2, after step 0 of 8" in captured.out
    assert len(results["history"]["loss"]) == 2
    assert "--epochs=2\n" in (workdir / run_folder.FLAGFILE).read_text()


def test_a_history_without_any_checkpoint_is_refused_and_kept(tmp_path):
    workdir = tmp_path / "run"
    train_tiny(workdir)
    os.remove(workdir / run_folder.RESULTS)
    history = (workdir / run_folder.HISTORY).read_text()
    for name in checkpoint_names(workdir):
        os.remove(workdir / run_folder.CHECKPOINTS / name)
    with pytest.raises(UserError) as refused:
        train_tiny(workdir)
    assert str(refused.value) == (
        f"{workdir} holds the history of 2 epochs but no checkpoint to resume from: put its "
        f"checkpoints/ back (ckpt-N.index and .data files), or pick another --run_name")
    assert (workdir / run_folder.HISTORY).read_text() == history
    assert json.loads(history)["loss"]


GOOD_HISTORY = {"loss": [1.5, 1.2], "accuracy": [0.45, 0.58], "val_loss": [1.3, 1.1],
                "val_accuracy": [0.54, 0.61], "seconds": [20.0, 14.0], "val_data": "the test set"}


@pytest.mark.parametrize("content, problem", [
    ("5", "holds a number, not a history written by train.py"),
    ("null", "holds null, not a history written by train.py"),
    ("[1, 2]", "holds a list, not a history written by train.py"),
    (json.dumps({**GOOD_HISTORY, "loss": {"1": 1.5}}),
     'holds an entry "loss" that is not a list of numbers'),
    (json.dumps({**GOOD_HISTORY, "accuracy": [0.45, "0.58"]}),
     'holds an entry "accuracy" that is not a list of numbers'),
    (json.dumps({**GOOD_HISTORY, "seconds": [20.0, True]}),
     'holds an entry "seconds" that is not a list of numbers'),
    (json.dumps({**GOOD_HISTORY, "val_loss": [1.3]}),
     "holds lists of different lengths (seconds 2, val_loss 1)"),
    (json.dumps({**GOOD_HISTORY, "cpu_seconds": [31.0]}),
     "holds lists of different lengths (seconds 2, cpu_seconds 1)"),
    (json.dumps({**GOOD_HISTORY, "val_data": 3}), 'holds an entry "val_data" that is not a text'),
], ids=["number", "null", "list", "dict", "string", "bool", "lengths", "cpu_seconds",
        "val_data"])
def test_a_damaged_history_is_named_in_one_line(tmp_path, content, problem):
    (tmp_path / run_folder.HISTORY).write_text(content)
    with pytest.raises(UserError) as refused:
        run_folder.read_history(str(tmp_path))
    assert str(refused.value) == (f"{tmp_path}/history.json {problem}: it was edited or "
                                  f"damaged")


def test_a_run_resumed_over_a_damaged_history_names_it(run_copy):
    workdir = run_copy
    (workdir / run_folder.HISTORY).write_text(json.dumps({**GOOD_HISTORY, "loss": [1.5, "1.2"]}))
    with pytest.raises(UserError, match=r'history.json holds an entry "loss" that is not a '
                                        r'list of numbers: it was edited or damaged'):
        train_tiny(workdir, force=True)


def test_a_setting_missing_from_flags_txt_counts_as_its_default(tmp_path, crash_on_save,
                                                                capsys):
    workdir = tmp_path / "run"
    with crash_on_save(2, OSError("simulated crash")), pytest.raises(UserError):
        train_tiny(workdir, checkpoint_every_n_steps=4)  # Leaves ckpt-4.
    flagfile = workdir / run_folder.FLAGFILE
    defaults = ("--model=simple_cnn", "--augment=none", "--mixed_precision=none")
    flagfile.write_text("".join(line for line in flagfile.read_text().splitlines(True)
                                if line.strip() not in defaults))  # As a run older than them.
    capsys.readouterr()
    results = train_tiny(workdir, checkpoint_every_n_steps=4)
    assert "ckpt-4: epoch 1, after step 4 of 8" in capsys.readouterr().out
    assert len(results["history"]["loss"]) == 2
    assert all(f"{line}\n" in flagfile.read_text() for line in defaults)


@pytest.mark.parametrize("content, problem", [
    ("", "holds no setting: it was emptied or damaged; write the run's flags back, one "
         "--name=value line each"),
    ("--epochs=2\nrm -rf /\n", "line 2 is not --name=value: 'rm -rf /'; fix that line"),
    ("--epochs=2\n--epoch=3\n", "line 2 names no setting of train.py: --epoch=3; fix that "
                                "line"),
], ids=["empty", "garbage", "unknown"])
def test_a_damaged_flags_txt_is_named_in_one_line(tmp_path, run_copy, parse, content,
                                                  problem):
    workdir = run_copy
    (workdir / run_folder.FLAGFILE).write_text(content)
    message = f"{workdir}/flags.txt {problem}, or pick another --run_name"
    with pytest.raises(UserError) as refused:
        train_tiny(workdir, epochs=1)
    assert str(refused.value) == message
    parse(f"--model_dir={tmp_path}", "--run_name=run", "--mode=eval")
    with pytest.raises(UserError) as refused:
        flags.to_config()  # Which reads the run's network settings from it.
    assert str(refused.value) == message


def test_a_runs_flags_txt_that_lost_its_run_name_does_not_start_a_run_elsewhere(tmp_path,
                                                                                parse):
    workdir = tmp_path / "runs" / "run"
    workdir.mkdir(parents=True)
    (workdir / run_folder.HISTORY).write_text(json.dumps(GOOD_HISTORY))
    saved = Config(model_dir=str(tmp_path / "runs"), run_name="run").to_flagfile()
    flagfile = workdir / run_folder.FLAGFILE
    flagfile.write_text(saved.replace("--run_name=run\n", ""))
    argv = ["train.py", f"--flagfile={flagfile}"]
    parse(*argv[1:])
    with pytest.raises(UserError) as refused:
        flags.to_config(argv=argv)
    assert str(refused.value).startswith(
        f"{flagfile} makes the run folder {tmp_path}/runs/20")  # A new run named by the time.
    assert str(refused.value).endswith(
        f", not {workdir} where it sits: it lacks its --run_name or --model_dir line, or the "
        f"run was moved; name the run folder with --model_dir and --run_name")
    flags.FLAGS.unparse_flags()
    parse(*argv[1:], "--run_name=again")  # Repeating a run under another name.
    assert flags.to_config(argv=argv + ["--run_name=again"]).run_name == "again"
