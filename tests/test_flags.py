import dataclasses
import os
import subprocess
import sys

import pytest
from absl import flags as absl_flags

import flags
from config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def parse():
    """Parses a command line into the global flags, and unparses them after."""
    yield lambda *args: flags.FLAGS(["train.py", *args])
    flags.FLAGS.unparse_flags()


def test_every_config_field_is_a_flag_with_the_same_default(parse):
    parse()
    for field in dataclasses.fields(Config):
        assert flags.FLAGS[field.name].default == field.default, field.name
        assert flags.FLAGS[field.name].help


@pytest.mark.parametrize("argument, message", [
    ("--epochs=0", "--epochs must be at least 1"),
    ("--batch_size=-4", "--batch_size must be at least 1"),
    ("--learning_rate=0", "--learning_rate must be > 0"),
    ("--steps_per_loop=0", "--steps_per_loop must be at least 1"),
    ("--run_name=../escape", "--run_name may hold only"),
    ("--run_name=..", "and not only dots"),
    ("--gpus=first", "--gpus must be comma-separated"),
    ("--strategy=tpu", "value should be one of"),
])
def test_bad_values_are_refused(parse, argument, message):
    with pytest.raises(absl_flags.IllegalFlagValueError, match=message):
        parse(argument)


def test_an_empty_run_name_becomes_the_start_time(parse):
    parse("--epochs=3")
    config = flags.to_config()
    assert config.epochs == 3
    assert len(config.run_name) == len("2026-11-27_14-03-59")


def test_the_flagfile_replays_the_config(parse, tmp_path):
    config = Config(epochs=2, batch_size=32, learning_rate=5e-4, run_name="replay")
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text(config.to_flagfile())
    parse(f"--flagfile={flagfile}")
    assert flags.to_config() == config


def test_the_flagfile_leaves_out_settings_of_one_command():
    text = Config(force=True, mode="eval", checkpoint="runs/x/checkpoints/ckpt-7").to_flagfile()
    names = {line.split("=")[0] for line in text.splitlines()}
    assert not names & {"--force", "--mode", "--checkpoint"}
    assert "--epochs" in names and "--model" in names


def _train_py(*args):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_bad_flag_stops_the_program_before_any_data_is_read(tmp_path):
    result = _train_py("--epochs=0", f"--data_dir={tmp_path}/nothing")
    assert result.returncode != 0
    assert "--epochs must be at least 1" in result.stderr
    assert not (tmp_path / "nothing").exists()


def test_helpfull_lists_the_flags():
    result = _train_py("--helpfull")
    for name in ("--epochs", "--batch_size", "--learning_rate", "--data_dir", "--model_dir",
                 "--run_name", "--seed", "--log_every_n_steps", "--strategy"):
        assert name in result.stdout
