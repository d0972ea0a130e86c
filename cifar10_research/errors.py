"""The exceptions that users, not programmers, cause, and how they are reported."""

import contextlib
import sys


class UserError(Exception):
    """An expected failure caused by the user's input: flags, files, data.

    `train.py` prints it as a single `error: ...` line, with no traceback, and
    exits 1. The message names the problem and what to do about it.
    """


class Interrupted(BaseException):
    """A run stopped on a signal (its own or a peer's); the entry point prints
    the message and exits with `exit_code`.

    Raised only by this project's code, at the points where it acts on a
    signal (see `stopping`); like KeyboardInterrupt, not an Exception, so that
    no `except Exception` on its way turns a stop into a failure.
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error: Exception) -> str:
    """An exception's message cut to its first line, to fit a one-line report;
    for an OS error, its plain reason ("No space left on device")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@contextlib.contextmanager
def reported_in_one_line():
    """Ends the program on a UserError with one `error: ...` line and exit code 1,
    and on an Interrupted with its one line and exit code."""
    try:
        yield
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)
