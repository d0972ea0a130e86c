"""The signal handling itself (`stopping.py`), at an interleaving that real
processes reach only by chance."""

import os
import signal
import threading
import time

from cifar10_research import stopping


class _PausedAfterRecording(stopping._Handling):
    """Pauses the watcher thread right after it records a signal, until `go`."""

    def __init__(self):
        self.recorded, self.go = threading.Event(), threading.Event()
        super().__init__()

    @property
    def requested(self):
        return self._requested

    @requested.setter
    def requested(self, signum):
        self._requested = signum
        if signum is not None:
            self.recorded.set()
            self.go.wait(timeout=10)


class _Child:
    pid = 4242


def test_a_signal_arriving_as_children_start_reaches_them_once(monkeypatch):
    handling = _PausedAfterRecording()
    handling.modes = [None]  # Within `deferred()`.
    monkeypatch.setattr(stopping, "_handling", handling)
    sent, inside, leave = [], threading.Event(), threading.Event()
    monkeypatch.setattr(os, "kill", lambda pid, signum: sent.append((pid, signum)))

    def start_children():
        with stopping.forwarded_to([_Child()]):
            inside.set()
            leave.wait(timeout=10)

    watcher = threading.Thread(target=stopping._take, args=(signal.SIGTERM,))
    watcher.start()
    assert handling.recorded.wait(timeout=10)
    starter = threading.Thread(target=start_children)
    starter.start()
    time.sleep(0.2)  # Time for the children's start to send what it has seen.
    handling.go.set()
    watcher.join(timeout=10)
    assert inside.wait(timeout=10)
    leave.set()
    starter.join(timeout=10)
    assert sent == [(_Child.pid, signal.SIGTERM)]
