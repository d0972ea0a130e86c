"""The command line: one absl flag per Config setting, derived from its declaration.

Each flag's type, default, help, allowed values and checks come from the
field of `cifar10_research.config.Config` of the same name; `to_config()`
turns the parsed flags into a Config, so nothing below the entry point reads
global flags.
"""

import dataclasses
import datetime
import os
import sys

from absl import flags

from cifar10_research import run_folder
from cifar10_research.config import CROSS_CHECKS, NETWORK_SETTINGS, Config
from cifar10_research.errors import UserError
from cifar10_research.saved_flags import parse_saved_flags

FLAGS = flags.FLAGS
_DEFINE_BY_TYPE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines a flag, with its validator, for every Config setting."""
    for field in dataclasses.fields(Config):
        help_text, choices, rule = (field.metadata[key] for key in ("help", "choices", "rule"))
        if choices:
            flags.DEFINE_enum(field.name, field.default, choices, help_text,
                              flag_values=flag_values)
        else:
            _DEFINE_BY_TYPE[type(field.default)](field.name, field.default, help_text,
                                                 flag_values=flag_values)
        if rule:
            flags.register_validator(field.name, rule.holds, message=rule.message(field.name),
                                     flag_values=flag_values)
    for names, holds, message in CROSS_CHECKS:
        flags.register_multi_flags_validator(names, holds, message=message,
                                             flag_values=flag_values)


def to_config(flag_values: flags.FlagValues = FLAGS, argv: list[str] | None = None) -> Config:
    """The parsed flags as a Config.

    An empty --run_name becomes the start time; --data_dir and --model_dir
    become absolute, so the run's flags.txt replays from any folder. A run's
    --model, --mixed_precision and --dataset, which its checkpoints are made
    for, come from its flags.txt unless the command line gives them:
    `--mode=eval --run_name=NAME` evaluates any run. A run's flags.txt among the --flagfile
    of `argv` (default: sys.argv) is checked by `refuse_misplaced`.
    """
    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(Config)}
    if not values["run_name"]:
        values["run_name"] = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for path in ("data_dir", "model_dir"):
        values[path] = os.path.abspath(os.path.expanduser(values[path]))
    saved = _saved_settings(values["model_dir"], values["run_name"])
    values.update({name: saved[name] for name in NETWORK_SETTINGS
                   if name in saved and not flag_values[name].present})
    config = Config(**values)
    refuse_misplaced(config, sys.argv if argv is None else argv)
    return config


def refuse_misplaced(config: Config, argv: list[str]) -> None:
    """Refuses a run's flags.txt given as --flagfile that makes another run folder
    than the one it sits in, unless `argv` names the run (--run_name, --model_dir).

    Edited or damaged (emptied, without its --run_name line), it would start a
    fresh run elsewhere instead of resuming its own.
    """
    named = any(arg.startswith(("--run_name", "--model_dir")) for arg in argv)
    workdir = os.path.join(config.model_dir, config.run_name)
    for path in _flagfiles(argv):
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.basename(path) != run_folder.FLAGFILE or not run_folder.holds_a_run(folder):
            continue
        parse_saved_flags(run_folder.read_text(path), path)  # An emptied one, said so.
        if not named and os.path.realpath(folder) != os.path.realpath(workdir):
            raise UserError(f"{path} makes the run folder {workdir}, not {folder} where it "
                            f"sits: it lacks its --run_name or --model_dir line, or the run "
                            f"was moved; name the run folder with --model_dir and --run_name")


def _flagfiles(argv: list[str]) -> list[str]:
    """The paths of argv's --flagfile=PATH and --flagfile PATH."""
    return [arg.partition("=")[2] if "=" in arg else argv[index + 1]
            for index, arg in enumerate(argv)
            if arg.startswith("--flagfile=") or (arg == "--flagfile" and index + 1 < len(argv))]


def _saved_settings(model_dir: str, run_name: str) -> dict[str, str]:
    """{name: value} from the run's flags.txt (a setting it lacks as its default),
    or {} for a new run."""
    path = os.path.join(model_dir, run_name, run_folder.FLAGFILE)
    if not os.path.isfile(path):
        return {}
    return parse_saved_flags(run_folder.read_text(path), path)


define_flags()
