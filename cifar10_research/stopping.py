"""SIGTERM and Ctrl-C as requests to stop cleanly at the next step boundary."""

import os
import signal
import sys
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequests:
    """While active, SIGTERM or a first Ctrl-C only sets `signal`; the loop then
    saves a checkpoint and stops. A second Ctrl-C exits at once: TensorFlow
    commits a checkpoint only once its files are complete, so the last
    finished checkpoint stays usable."""

    def __init__(self, enabled: bool = True):
        """Disabled, signals keep their default effect (multi-worker runs)."""
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
