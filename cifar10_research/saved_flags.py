"""A run's saved flags.txt and the recipes' flagfiles, read back as {name: value}."""

import dataclasses

from cifar10_research.config import Config
from cifar10_research.errors import UserError

# Values older runs' flags.txt may hold, by setting, and what they are called now.
RENAMED_VALUES = {"tta": {"False": "none", "True": "flip"}}  # --tta was on or off.


def parse_saved_flags(text: str, path: str) -> dict[str, str]:
    """{name: value} of every setting, from a run's flags.txt (`text`, read from
    `path`): one it lacks (a setting newer than the run) as its default, an
    old value by its RENAMED_VALUES name.

    Refuses, in one line, a file of no setting, a line other than
    `--name=value` (or blank, or a # comment) and a name that is no setting.
    """
    settings = {field.name: str(field.default) for field in dataclasses.fields(Config)}
    advice = "or pick another --run_name"
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise UserError(f"{path} holds no setting: it was emptied or damaged; write the run's "
                        f"flags back, one --name=value line each, {advice}")
    for number, line in lines:
        name, equals, value = line[2:].partition("=")
        if not (line.startswith("--") and equals):
            raise UserError(f"{path} line {number} is not --name=value: {line[:40]!r}; fix "
                            f"that line, {advice}")
        if name not in settings:
            raise UserError(f"{path} line {number} names no setting of train.py: {line[:40]}; "
                            f"fix that line, {advice}")
        settings[name] = RENAMED_VALUES.get(name, {}).get(value, value)
    return settings


def parse_flagfile(text: str) -> dict[str, str]:
    """{name: value} of a flagfile's `--name=value` lines."""
    return dict(line[2:].split("=", 1) for line in text.splitlines()
                if line.startswith("--") and "=" in line)
