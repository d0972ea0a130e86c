"""SIGTERM and Ctrl-C as requests to stop cleanly at the next step boundary."""

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


def _raise_interrupted(signum, frame):
    name = signal.Signals(signum).name
    raise Interrupted(f"Stopped by {name} outside the training steps: nothing saved is lost; "
                      f"rerun the same command to go on (a run resumes from its latest "
                      f"checkpoint and redoes what it had not finished)", EXIT_CODES[signum])


class StopRequests:
    """While active, SIGTERM or a first Ctrl-C only sets `signal`; the loop then
    saves a checkpoint and stops. A second Ctrl-C exits at once: TensorFlow
    commits a checkpoint only once its files are complete, so the last
    finished checkpoint stays usable."""

    def __init__(self, enabled: bool = True):
        """Disabled, signals keep the effect they had (multi-worker runs)."""
        self.signal = None
        self._enabled = enabled
        self._previous = {}

    def __enter__(self):
        if self._enabled and threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
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
