"""The command line, derived from Config's declarations."""

import dataclasses
import datetime
import os

import pytest
from absl import flags as absl_flags

import data
import flags
import model
from cifar10_research import distribute, optimizers, precision, schedules
from cifar10_research.config import Config
from cifar10_research.dataset import DATASETS
from cifar10_research.saved_flags import parse_flagfile
from tests.conftest import ROOT, run_python


def test_no_flags_give_the_keras_tutorials_recipe(parse):
    parse()
    config = flags.to_config()
    assert (config.model, config.epochs, config.batch_size, config.learning_rate) == (
        "simple_cnn", 10, 64, 1e-3)
    assert (config.augment, config.lr_schedule, config.weight_decay, config.label_smoothing,
            config.validation_split, config.mixed_precision) == (
        "none", "constant", 0, 0, 0, "none")
    with open(os.path.join(ROOT, "recipes", "tutorial.flags")) as file:
        recipe = parse_flagfile(file.read())
    assert set(recipe) == {"model", "epochs", "batch_size", "learning_rate"}
    assert {name: str(getattr(config, name)) for name in recipe} == recipe


def test_each_registry_is_the_choice_of_its_flag(parse):
    parse()
    registries = {"model": model.MODELS, "augment": data.AUGMENTATIONS, "mix": data.MIXES,
                  "lr_schedule": schedules.SCHEDULES, "strategy": distribute.STRATEGIES,
                  "mixed_precision": precision.POLICIES, "dataset": DATASETS,
                  "optimizer": optimizers.OPTIMIZERS}
    for name, registry in registries.items():
        assert flags.FLAGS[name].parser.enum_values == list(registry), name
    with pytest.raises(absl_flags.IllegalFlagValueError, match="value should be one of"):
        flags.FLAGS["model"].parse("resnet")


@pytest.mark.parametrize("argument, message", [
    ("--epochs=0", "--epochs must be at least 1"),
    ("--batch_size=-4", "--batch_size must be at least 1"),
    ("--learning_rate=0", "--learning_rate must be > 0"),
    ("--learning_rate=inf", "--learning_rate must be > 0 and finite"),
    ("--learning_rate=nan", "--learning_rate must be > 0 and finite"),
    ("--steps_per_loop=0", "--steps_per_loop must be at least 1"),
    ("--run_name=../escape", "--run_name may hold only"),
    ("--run_name=..", "and not only dots"),
    ("--gpus=first", "--gpus must be comma-separated"),
    ("--strategy=tpu", "value should be one of"),
    ("--warmup_epochs=3", "--warmup_epochs cannot exceed --epochs"),
    ("--checkpoint=runs/a/checkpoints/ckpt-1", "--checkpoint is only for --mode=eval"),
])
def test_bad_values_are_refused(parse, argument, message):
    with pytest.raises(absl_flags.IllegalFlagValueError, match=message):
        parse("--epochs=2", argument)


def test_an_empty_run_name_becomes_the_start_time(parse):
    parse("--epochs=3")
    config = flags.to_config()
    started = datetime.datetime.strptime(config.run_name, "%Y-%m-%d_%H-%M-%S")
    assert abs((datetime.datetime.now() - started).total_seconds()) < 60


def test_the_flagfile_replays_the_config(parse, tmp_path):
    config = Config(epochs=2, batch_size=32, learning_rate=5e-4, run_name="replay",
                    data_dir=str(tmp_path / "data"), model_dir=str(tmp_path / "runs"))
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text(config.to_flagfile())
    parse(f"--flagfile={flagfile}")
    assert flags.to_config() == config


def test_a_runs_flagfile_with_another_run_name_repeats_it_under_that_name(parse, tmp_path):
    run_a = Config(epochs=3, batch_size=32, learning_rate=5e-4, model="fast_cnn", augment="flip",
                   seed=7, run_name="a", data_dir=str(tmp_path / "data"),
                   model_dir=str(tmp_path / "runs"))
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "flags.txt").write_text(run_a.to_flagfile())
    parse(f"--flagfile={tmp_path / 'runs' / 'a' / 'flags.txt'}", "--run_name=b")
    assert flags.to_config() == run_a.replace(run_name="b")


def test_paths_become_absolute_so_the_flagfile_replays_anywhere(parse, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parse("--data_dir=data", "--model_dir=runs", "--run_name=x")
    config = flags.to_config()
    assert (config.data_dir, config.model_dir) == (str(tmp_path / "data"), str(tmp_path / "runs"))
    assert f"--data_dir={tmp_path / 'data'}\n" in config.to_flagfile()


def test_a_run_keeps_its_network_unless_the_command_names_one(parse, tmp_path):
    run = tmp_path / "wide"
    run.mkdir()
    (run / "flags.txt").write_text(Config(model="wide_cnn", mixed_precision="bfloat16",
                                          dataset="cifar100", epochs=7).to_flagfile())
    parse(f"--model_dir={tmp_path}", "--run_name=wide", "--mode=eval")
    config = flags.to_config()
    assert (config.model, config.mixed_precision, config.dataset, config.epochs) == (
        "wide_cnn", "bfloat16", "cifar100", 10)
    flags.FLAGS.unparse_flags()
    parse(f"--model_dir={tmp_path}", "--run_name=wide", "--model=simple_cnn")
    assert flags.to_config().model == "simple_cnn"
    flags.FLAGS.unparse_flags()
    parse(f"--model_dir={tmp_path}", "--run_name=new")
    assert flags.to_config().model == "simple_cnn"


@pytest.mark.slow
def test_a_bad_flag_stops_the_program_before_any_data_is_read(tmp_path):
    result = run_python("train.py", "--epochs=0", f"--data_dir={tmp_path}/nothing")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "FATAL Flags parsing error: flag --epochs=0: --epochs must be at least 1")
    assert not (tmp_path / "nothing").exists()


@pytest.mark.slow
def test_helpfull_lists_every_setting_with_its_help():
    result = run_python("train.py", "--helpfull")
    assert result.returncode == 1, result.stderr  # absl's help flags exit 1 after printing.
    assert result.stderr == ""
    help_text = " ".join(result.stdout.split())  # absl wraps the lines.
    for field in dataclasses.fields(Config):
        shown = f"--[no]{field.name}" if field.type is bool else f"--{field.name}:"
        assert shown in help_text, field.name
        assert " ".join(field.metadata["help"].split()[:6]) in help_text, field.name
