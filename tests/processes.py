"""The project's commands (train.py, scripts/*.py) as real processes that skip
TensorFlow's import: each is forked from a server process that imported the
package (and so TensorFlow and Keras) once.

Importing TensorFlow costs each new Python process 5 to 8 s of CPU on the CI
machine, most of what a test's tiny run costs. A forked command is still a
process of its own, with its own pid, pipes, signals and exit code, running
its script as `__main__` as `python <script>` does; what it does not go
through is the interpreter's start and TensorFlow's import. The tests of those
(no banners, a signal while TensorFlow loads) start fresh interpreters with
subprocess. Forked commands share the server's hash seed (a fresh interpreter
draws its own), so a test that two runs are identical compares a fresh one
with a forked one.
"""

import contextlib
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
import threading
from multiprocessing import reduction

_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload(["cifar10_research"])


class _Inherited:
    """A file descriptor the forked process gets a copy of (through the server)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _detach, (reduction.DupFd(self.fd),)


def _detach(duplicate) -> int:
    return duplicate.detach()


def _run_script(command: list, cwd: str, env: dict, fds: tuple) -> None:
    """In the forked process: `python <script> <args>` with these fds as 0, 1, 2."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))  # As Python sets it up, for a pipe.
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # Read from the new environment (TMPDIR), as at start-up.
    script = os.path.abspath(command[1])
    sys.argv = command[1:]
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")


class Process:
    """A started command, with the part of subprocess.Popen's interface (text
    mode, stdout and stderr piped) that the tests use."""

    def __init__(self, command: list, cwd: str, env: dict):
        if command[0] != sys.executable or not command[1].endswith(".py"):
            raise ValueError(f"not a `python <script>.py` command: {command}")
        pipes = [os.pipe(), os.pipe()]
        stdin = os.open(os.devnull, os.O_RDONLY)
        fds = (stdin, pipes[0][1], pipes[1][1])
        self._process = _SERVER.Process(target=_run_script, args=(
            command, cwd, env, tuple(_Inherited(fd) for fd in fds)))
        self._process.start()
        for fd in fds:
            os.close(fd)
        self.pid = self._process.pid
        self.stdout, self.stderr = (open(read, encoding="utf-8") for read, _ in pipes)
        self.returncode = None

    def poll(self):
        if self.returncode is None and not self._process.is_alive():
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self._process.name, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # It has just ended.
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self._process.kill()

    def communicate(self, timeout: float | None = None) -> tuple:
        """Reads stdout and stderr to their ends, as the process ends."""
        outputs = [None, None]

        def read(index, stream):
            with stream:
                outputs[index] = stream.read()
        readers = [threading.Thread(target=read, args=(index, stream), daemon=True)
                   for index, stream in enumerate((self.stdout, self.stderr))]
        for reader in readers:
            reader.start()
        self.wait(timeout)
        for reader in readers:
            reader.join(timeout)
        return tuple(outputs)


def start(command: list, cwd: str | None = None, env: dict | None = None,
          fresh: bool = False) -> Process | subprocess.Popen:
    """Starts `command`, `[sys.executable, <script>.py, *args]`, in `cwd` (default:
    this process's), with `env` as its whole environment (default: this process's):
    forked, or if `fresh` in a new interpreter (subprocess.Popen)."""
    if fresh:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return Process(command, cwd or os.getcwd(), dict(os.environ if env is None else env))


def run(command: list, cwd: str | None = None, env: dict | None = None,
        timeout: float | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """Runs `command` to its end, as subprocess.run(..., capture_output=True, text=True),
    forked unless `fresh`."""
    if fresh:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    process = start(command, cwd, env)
    try:
        stdout, stderr = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
