"""A watchdog process for a multi-worker worker: run as a file, standard library only.

    python watchdog.py WORKER_PID TIMEOUT ADDRESS...

TensorFlow's cluster set-up blocks while holding Python's interpreter lock, so
inside the worker neither a signal handler nor a thread can run while it
waits for absent peers. This process can: it prints which peers (by address)
are not reachable yet, every REPORT_SECONDS until all are; after TIMEOUT
seconds (0: never) it ends the worker with one error line; and when a Ctrl-C
or SIGTERM is pending in the worker (which holds both during its set-up, see
`distribute.peers_watched`), it ends the worker at once with one line. It ends
a worker with SIGKILL, the only signal TensorFlow cannot take then: the
worker's exit code is 137. Pending signals are read from Linux's
/proc/PID/status; elsewhere they wait until the set-up ends. The worker kills
this process when its set-up ends; it also exits when the worker does.
"""

import os
import signal
import socket
import sys
import time

REPORT_SECONDS = 5.0
POLL_SECONDS = 0.2
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def unreachable(addresses: list[str]) -> list[str]:
    """The `host:port` addresses that accept no TCP connection now."""
    missing = []
    for address in addresses:
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            missing.append(address)
    return missing


def pending_stop(worker: int) -> signal.Signals | None:
    """SIGINT or SIGTERM when one is pending in `worker`, by Linux's /proc."""
    try:
        with open(f"/proc/{worker}/status") as status:
            masks = [int(line.split()[1], 16) for line in status
                     if line.startswith(("SigPnd:", "ShdPnd:"))]
    except OSError:
        return None
    pending = [number for number in SIGNALS if any(mask >> (number - 1) & 1 for mask in masks)]
    return signal.Signals(pending[0]) if pending else None


def end_worker(worker: int, line: str) -> None:
    print(line, file=sys.stderr, flush=True)
    os.kill(worker, signal.SIGKILL)
    sys.exit(0)


def main(worker: int, timeout: float, peers: list[str]) -> None:
    # A Ctrl-C reaches the whole process group: this process must outlive it to report it.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    start = next_report = time.monotonic()
    while os.getppid() == worker:
        stop = pending_stop(worker)
        if stop:
            end_worker(worker, f"Stopped by {stop.name} while waiting for the other workers: "
                               f"nothing was written; rerun every worker to go on")
        waited = time.monotonic() - start
        if peers and timeout and waited >= timeout and (peers := unreachable(peers)):
            end_worker(worker, f"error: the workers at {', '.join(peers)} did not start "
                               f"within --worker_timeout={timeout:g} s: start every worker "
                               f"of the cluster, or check its addresses")
        if peers and time.monotonic() >= next_report + REPORT_SECONDS:
            peers = unreachable(peers)
            next_report = time.monotonic()
            if peers:
                print(f"Waiting {waited:.0f} s for the workers at {', '.join(peers)} to "
                      f"start", file=sys.stderr, flush=True)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])
