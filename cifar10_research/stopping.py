"""SIGTERM and Ctrl-C as requests to stop cleanly at the next step boundary."""

import contextlib
import os
import signal
import sys
import threading

from cifar10_research.errors import Interrupted

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def interrupt_by_exception() -> None:
    """Outside the training steps (start-up, data loading, finishing a run),
    SIGTERM and Ctrl-C raise Interrupted, which the entry point reports in one
    line with the signal's exit code: no traceback, and no silent death on
    SIGTERM. Inside them, StopRequests takes over and restores this after."""
    for signum in EXIT_CODES:
        signal.signal(signum, _raise_interrupted)


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


def _raise_interrupted(signum, frame):
    name = signal.Signals(signum).name
    raise Interrupted(f"Stopped by {name} outside the training steps: nothing saved is lost; "
                      f"rerun the same command to go on (a run resumes from its latest "
                      f"checkpoint and redoes what it had not finished)", EXIT_CODES[signum])


def _stop_worker_at_once(signum, frame):
    raise Interrupted(f"Stopped by {signal.Signals(signum).name}: a worker of a multi-worker "
                      f"run stops at once; rerun every worker to resume from the chief's "
                      f"latest checkpoint", EXIT_CODES[signum])


class StopRequests:
    """While active (on one machine), SIGTERM or a first Ctrl-C only sets
    `signal`; the loop then saves a checkpoint and stops. A second Ctrl-C exits
    at once: TensorFlow commits a checkpoint only once its files are complete,
    so the last finished checkpoint stays usable."""

    def __init__(self, coordinated: bool = True):
        """Not `coordinated` (a worker of several, which the others would wait
        for at a step of its own choosing): a signal stops the worker at once."""
        self.signal = None
        self._handler = self._handle if coordinated else _stop_worker_at_once
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            print("\nSecond Ctrl-C: exiting now; the last complete checkpoint is kept.",
                  file=sys.stderr, flush=True)
            os._exit(EXIT_CODES[signum])
        self.signal = signal.Signals(signum)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.signal]
