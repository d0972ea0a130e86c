"""Starts N local training workers under MultiWorkerMirroredStrategy.

    python scripts/launch_workers.py --num_workers=2 -- --epochs=1 --model_dir=runs

Everything after `--` goes to train.py. Each worker gets a free loopback
port and its own TF_CONFIG; their output is streamed with a `[worker i]`
prefix. If a worker fails, the others are stopped and this exits non-zero.
Ctrl-C or SIGTERM to this process is sent on to every worker, which then stop
together after a checkpoint, as on a cluster.
On real machines, run train.py once per machine with that machine's TF_CONFIG
instead (see the README).
"""

import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags

from cifar10_research import command  # The first of the project's imports: see command.py.
from cifar10_research import stopping
from cifar10_research.errors import Interrupted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_integer("num_workers", 2, "How many worker processes to start.", lower_bound=1)
FLAGS = flags.FLAGS


def free_loopback_ports(count: int) -> list[int]:
    """Ports the OS reports free on 127.0.0.1, held open together so they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses},
                       "task": {"type": "worker", "index": index}})


def train_arguments(passed: list[str]) -> list[str]:
    """train.py's flags: multi-worker, and one run name shared by every worker."""
    if any(arg.startswith("--strategy") and arg != "--strategy=multi_worker" for arg in passed):
        raise app.UsageError("the launcher sets --strategy=multi_worker itself; drop --strategy")
    arguments = ["--strategy=multi_worker", *passed]
    if not any(arg.startswith("--run_name") for arg in passed):
        run_name = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        arguments.append(f"--run_name={run_name}")
    return arguments


def stream(worker: int, process: subprocess.Popen) -> None:
    for line in process.stdout:
        sys.stdout.write(f"[worker {worker}] {line}")
        sys.stdout.flush()


def start_workers(num_workers: int, arguments: list[str]):
    """Starts the workers; returns them and the threads that echo their output."""
    addresses = [f"127.0.0.1:{port}" for port in free_loopback_ports(num_workers)]
    processes, echoes = [], []
    for index in range(num_workers):
        env = {**os.environ, "TF_CONFIG": tf_config(addresses, index), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(  # Its own session: signals reach it through this process.
            [sys.executable, os.path.join(ROOT, "train.py"), *arguments], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        echo = threading.Thread(target=stream, args=(index, process), daemon=True)
        echo.start()
        processes.append(process)
        echoes.append(echo)
    return processes, echoes


def wait_for_all(processes: list[subprocess.Popen]) -> tuple[int, list[int]]:
    """Waits until every worker exits; on the first failure stops the rest,
    unless a signal asked them all to stop, which they do together.

    Returns the index of the failed worker (-1 when all succeeded) and those
    of the workers it stopped.
    """
    while True:
        codes = [process.poll() for process in processes]
        failed = [index for index, code in enumerate(codes) if code not in (None, 0)]
        running = [index for index, code in enumerate(codes) if code is None]
        if failed and not stopping.requested():
            for index in running:
                processes[index].kill()
            return failed[0], running
        if not running:
            return (failed[0] if failed else -1), []
        time.sleep(0.2)


def main(argv):
    processes, echoes = start_workers(FLAGS.num_workers, train_arguments(argv[1:]))
    with stopping.deferred(), stopping.forwarded_to(processes):
        failed, stopped = wait_for_all(processes)
        for echo in echoes:
            echo.join()
        if signum := stopping.requested():
            codes = ", ".join(str(process.returncode) for process in processes)
            raise Interrupted(f"Stopped by {signum.name}, sent on to every worker (exit codes "
                              f"{codes})", stopping.EXIT_CODES[signum])
    if failed >= 0:
        stopped_ones = (f"; stopped worker{'s' if len(stopped) > 1 else ''} "
                        f"{', '.join(map(str, stopped))}" if stopped else "")
        print(f"error: worker {failed} exited with code {processes[failed].returncode}"
              f"{stopped_ones}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    command.run(main, stopped="")
