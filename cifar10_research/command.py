"""What makes a process one of the project's commands (train.py, scripts/*.py).

    from cifar10_research import command  # First, before the other imports.
    ...
    if __name__ == "__main__":
        command.run(main)

Importing this module imports TensorFlow without its banners (the package's
`__init__`, with signals held) and then, for the rest of the process, makes
SIGINT and SIGTERM end it at once with one line and the signal's exit code,
never a traceback, except where a phase that writes takes them over
(`stopping.deferred`). A notebook or a test that imports the library keeps
its own handlers: only commands import this module.
"""

import os
import sys

from absl import app

from cifar10_research import stopping
from cifar10_research.errors import reported_in_one_line

STARTING = " while starting: nothing was written"
stopping.at_once_from_now(STARTING)


def run(main, stopped: str = STARTING) -> None:
    """absl's `app.run(main)`, reporting a UserError or Interrupted in one line.

    Once the flags are parsed, a signal outside `deferred()` blocks ends the
    command with `Stopped by SIG<NAME><stopped>`. The process ends as soon as
    `main` does: Python's own shutdown (a second or more with TensorFlow
    loaded) would put the default handlers back, under which a signal kills
    the process without a word, or with a traceback.
    """
    def reported(argv):
        stopping.at_once_from_now(stopped)
        with reported_in_one_line():
            return main(argv)
    try:
        app.run(reported)  # Always ends in sys.exit.
    except SystemExit as end:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_code(end.code))


def _exit_code(code) -> int:
    """sys.exit(code)'s exit code: 0 for None; a message is printed, and is 1."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr, flush=True)
    return 1
