"""SIGTERM and Ctrl-C: recorded when they arrive, acted on where the code chooses.

A signal handler that raises an exception raises it at whatever bytecode runs,
often inside TensorFlow's Python, C++ or pybind layers, which catch, rewrap or
drop it (a SIGTERM during a SavedModel export came out as a TypeError; one
during a collective as "pybind11::error_already_set"). So no handler here
raises. Once a command has called `at_once_from_now`, or while a `deferred()`
block runs in the main thread, Python's handlers for both signals do nothing
but wake a watcher thread (through `signal.set_wakeup_fd`), which:

- in a command's process (`at_once_from_now`) outside `deferred()` blocks,
  where nothing is being written, prints the one line and ends the process
  at once with the signal's exit code;
- under `deferred()`, records the first signal for the code to act on at the
  points it chooses (`requested()`, `check()`): between training steps,
  between the files a run writes, between the files it reads. A second
  signal ends the process at once: every file is written whole and renamed
  into place, so whatever was complete stays usable.

The watcher runs even while the main thread is blocked inside TensorFlow, as
long as that releases Python's interpreter lock. It never takes the signals
itself, so a signal held pending by the main thread stays pending (see
`distribute.peers_watched`).
"""

import contextlib
import os
import signal
import sys
import threading

from cifar10_research.errors import Interrupted

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class _Handling:
    """The process's state: the modes entered (innermost last), the signal
    recorded, and the pipe that wakes the watcher thread."""

    def __init__(self):
        self.modes = []  # The end of an at-once mode's line, or None for deferred.
        self.requested = None
        self.forward_to = []  # The PIDs each signal is sent on to first.
        self.sending = threading.Lock()  # Each signal reaches each child once.
        self.pipe = None


_handling = _Handling()


def requested() -> signal.Signals | None:
    """The signal recorded under `deferred()`, if one arrived."""
    return _handling.requested


def outside_training(signum: signal.Signals) -> Interrupted:
    return Interrupted(f"Stopped by {signum.name} outside the training steps: nothing saved is "
                       f"lost; rerun the same command to go on (a run resumes from its latest "
                       f"checkpoint and redoes what it had not finished)", EXIT_CODES[signum])


def check() -> None:
    """A point where a recorded signal may end the run: raises Interrupted if one did."""
    if _handling.requested is not None:
        raise outside_training(_handling.requested)


def at_once_from_now(ending: str) -> None:
    """For a command's process (see `command.py`): from now on, SIGINT or SIGTERM
    ends it at once with the line `Stopped by SIG<NAME><ending>` and the
    signal's exit code, except within `deferred()` blocks. Called again, it
    changes the ending."""
    if not _handling.modes:
        _install()
        _handling.modes.append(ending)
    _handling.modes[0] = ending


@contextlib.contextmanager
def deferred():
    """Within the block, the first SIGINT or SIGTERM is recorded for the code to
    act on; a second ends the process at once. Leaving the block, a signal
    recorded that nobody acted on raises `outside_training`'s Interrupted,
    unless an enclosing deferred block will act on it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Only the main thread takes signals.
        return
    outermost = not _handling.modes
    nested = not outermost and _handling.modes[-1] is None
    if not nested:
        _handling.requested = None
    restore = _install() if outermost else None
    _handling.modes.append(None)
    try:
        yield
    finally:
        _handling.modes.pop()
        if restore:
            restore()
    if not nested:
        check()


@contextlib.contextmanager
def forwarded_to(processes: list):
    """Within a `deferred()` block: each SIGINT or SIGTERM this process takes
    (one already recorded too) is first sent on to `processes`, child commands
    started in sessions of their own (`start_new_session=True`), which a
    terminal's Ctrl-C then reaches this way alone, once."""
    with _handling.sending:
        _handling.forward_to = [process.pid for process in processes]
        if _handling.requested is not None:
            _send_on(_handling.requested)
    try:
        yield
    finally:
        with _handling.sending:
            _handling.forward_to = []


def _send_on(signum: signal.Signals) -> None:
    for pid in _handling.forward_to:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _install():
    """Python's handlers for both signals only wake the watcher thread, which
    acts (`_take`); returns the function that puts back what was there."""
    if _handling.pipe is None:
        _handling.pipe = os.pipe()
        os.set_blocking(_handling.pipe[1], False)
        with signals_held():  # The watcher never takes them: the main thread does.
            threading.Thread(target=_watch, args=(_handling.pipe[0],), daemon=True,
                             name="signal-watcher").start()
    handlers = {signum: signal.signal(signum, _wake_only) for signum in EXIT_CODES}
    wakeup = signal.set_wakeup_fd(_handling.pipe[1], warn_on_full_buffer=False)

    def restore():
        signal.set_wakeup_fd(wakeup)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return restore


def _wake_only(signum, frame):
    """Python's handler, run later in the main thread: the watcher has acted."""


def _watch(read_end: int) -> None:
    while True:
        for number in os.read(read_end, 64):
            if number in EXIT_CODES and _handling.modes:
                _take(signal.Signals(number))


def _take(signum: signal.Signals) -> None:
    """In the watcher thread: ends the process, or records the signal (before
    sending it on, so that a child that stops at once is seen as asked to)."""
    ending = _handling.modes[-1]
    with _handling.sending:
        first = ending is None and _handling.requested is None
        if first:
            _handling.requested = signum
        _send_on(signum)
    if ending is not None:
        _exit_now(f"Stopped by {signum.name}{ending}", signum)
    elif not first:
        _exit_now(f"\nSecond {_NAMES[signum]}: exiting now; the last complete checkpoint is "
                  f"kept.", signum)


def _exit_now(line: str, signum: signal.Signals) -> None:
    """Ends the process from the watcher thread, whatever the main thread does."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os.write(2, (line + "\n").encode())
    os._exit(EXIT_CODES[signum])


@contextlib.contextmanager
def signals_held():
    """Holds SIGINT and SIGTERM pending in this thread, and in every thread it
    starts meanwhile, for good; on leaving, this thread takes them again, and
    Python handles any that arrived meanwhile."""
    signal.pthread_sigmask(signal.SIG_BLOCK, EXIT_CODES)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, EXIT_CODES)


@contextlib.contextmanager
def handlers_restored():
    """Puts SIGINT's and SIGTERM's Python handlers back after the block, over
    whatever replaced them meanwhile: Python code, or C code such as
    TensorFlow's multi-worker set-up, which installs a SIGTERM handler."""
    previous = {signum: signal.getsignal(signum) for signum in EXIT_CODES}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def held_while_importing():
    """Around TensorFlow's import. The threads it starts never take SIGINT or
    SIGTERM: the main thread, where Python runs the handlers, does (a helper
    thread would take them with TensorFlow's own SIGTERM handler when a
    multi-worker set-up installs it). A signal that arrives meanwhile ends the
    process in one line with its exit code: nothing has started yet."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # Released before the handlers are restored: one that arrived is handled here.
    with handlers_restored(), signals_held():
        for signum in EXIT_CODES:
            signal.signal(signum, _exit_before_start)
        yield


def _exit_before_start(signum, frame):
    print(f"Stopped by {signal.Signals(signum).name} while starting: nothing was written",
          file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CODES[signum])
