"""The one exception type that users, not programmers, cause."""


class UserError(Exception):
    """An expected failure caused by the user's input: flags, files, data.

    `train.py` prints it as a single `error: ...` line, with no traceback, and
    exits non-zero. The message names the problem and what to do about it.
    """
