"""A watchdog process for a multi-worker worker: run as a file, standard library only.

    python watchdog.py WORKER_PID SIGNAL_FD TIMEOUT ADDRESS...

TensorFlow's cluster set-up blocks while holding Python's interpreter lock, so
inside the worker neither a signal handler nor a thread can run while it
waits for absent peers. This process can: it prints which peers (by address)
are not reachable yet, every REPORT_SECONDS until all are; after TIMEOUT
seconds (0: never) it ends the worker with one error line; and on Ctrl-C or
SIGTERM, whose numbers Python's C-level handler writes into SIGNAL_FD (see
`signal.set_wakeup_fd`) even while the worker is blocked, it ends the worker
at once. (A SIGTERM sent while the worker waits in TensorFlow's set-up never
arrives: the set-up installs a SIGTERM handler of its own.) It exits when the
worker does (its end of the pipe closes).
"""

import os
import select
import signal
import socket
import sys
import time

REPORT_SECONDS = 5.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def unreachable(addresses: list[str]) -> list[str]:
    """The `host:port` addresses that accept no TCP connection now."""
    missing = []
    for address in addresses:
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            missing.append(address)
    return missing


def end_worker(worker: int, line: str) -> None:
    print(line, file=sys.stderr, flush=True)
    os.kill(worker, signal.SIGKILL)
    sys.exit(0)


def main(worker: int, signal_fd: int, timeout: float, peers: list[str]) -> None:
    start = time.monotonic()
    waiting = True
    while True:
        readable, _, _ = select.select([signal_fd], [], [], REPORT_SECONDS)
        if readable:
            numbers = os.read(signal_fd, 64)
            if not numbers:
                return  # The worker has ended.
            for number in numbers:
                if number in SIGNALS:
                    end_worker(worker, f"Stopped by {signal.Signals(number).name}: a worker of "
                                       f"a multi-worker run stops at once; rerun every worker "
                                       f"to resume from the chief's latest checkpoint")
        if waiting:
            missing = unreachable(peers)
            waited = time.monotonic() - start
            waiting = bool(missing)
            if missing and timeout and waited >= timeout:
                end_worker(worker, f"error: the workers at {', '.join(missing)} did not start "
                                   f"within --worker_timeout={timeout:g} s: start them with "
                                   f"the same TF_CONFIG cluster, or check its addresses")
            if missing:
                print(f"Waiting {waited:.0f} s for the workers at {', '.join(missing)} to "
                      f"start", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
