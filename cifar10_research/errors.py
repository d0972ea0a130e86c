"""The exceptions that users, not programmers, cause, and how they are reported."""

import contextlib
import sys


class UserError(Exception):
    """An expected failure caused by the user's input: flags, files, data.

    `train.py` prints it as a single `error: ...` line, with no traceback, and
    exits 1. The message names the problem and what to do about it.
    """


class Interrupted(BaseException):
    """A run stopped on a signal; `train.py` exits with `exit_code`.

    Like KeyboardInterrupt, not an Exception: raised by a signal handler at
    any line, it must pass through library code that catches or rewraps
    exceptions (Keras turns one raised inside a layer into a RuntimeError).
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
    """Ends the program on a UserError with one `error: ...` line and exit code 1."""
    try:
        yield
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
