"""How a setting of `Config` is declared: what it is for (its kind), the rule its
value must hold, and the dataclass field that carries both with its help."""

import dataclasses
import re
from typing import Callable

# What a setting is for, which decides where it goes:
COMPUTES = "computes"  # changes what a run computes: a resume must keep it (or --force)
RUNS = "runs"  # where and how a run runs: saved in flags.txt, free to change on resume
COMMAND = "command"  # concerns one command, not the run: not saved in flags.txt


@dataclasses.dataclass(frozen=True)
class Rule:
    """A check of one value: `holds(value)`, else the error `--<name> <says>`."""

    holds: Callable
    says: str

    def message(self, name: str) -> str:
        return f"--{name} {self.says}"


def at_least(minimum) -> Rule:
    return Rule(lambda value: value >= minimum, f"must be at least {minimum}")


def matches(pattern: str, says: str) -> Rule:
    return Rule(lambda value: re.fullmatch(pattern, value) is not None, says)


def setting(default, help: str, kind: str = RUNS, *, choices=None, rule: Rule | None = None,
            network: bool = False):
    """A Config field's declaration.

    `choices`: a registry (dict) or tuple of the allowed values. `network`:
    the setting shapes the network's variables, so a run's checkpoints fit
    only its own value; a command that names a run takes it from the run's
    flags.txt unless given.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "kind": kind, "choices": tuple(choices) if choices else None,
        "rule": rule, "network": network})
