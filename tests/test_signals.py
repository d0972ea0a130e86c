"""SIGTERM and Ctrl-C to train.py, as users and schedulers send them: at chosen
moments, and at random ones over whole runs, each followed by a rerun."""

import os
import random
import signal
import sys
import time

import keras
import pytest

from cifar10_research import run_folder
from cifar10_research.stopping import EXIT_CODES
from tests import processes
from tests.conftest import ROOT

EPOCHS = 3
RANDOM_SIGNALS = 4


def train_command(data_dir, model_dir, name, *flags):
    return [sys.executable, "train.py", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
            f"--run_name={name}", "--batch_size=8", *flags]


def start(command, fresh=False):
    """The command's process: forked with TensorFlow imported (tests/processes.py),
    or if `fresh` a new interpreter, which a signal may reach as TensorFlow loads."""
    return processes.start(command, cwd=ROOT, fresh=fresh)


def importing_tensorflow(process) -> bool:
    """Whether `process` has begun loading TensorFlow (or has ended)."""
    if process.poll() is not None:
        return True
    with open(f"/proc/{process.pid}/maps") as maps:
        return "libtensorflow" in maps.read()


def read_until(process, found) -> list[str]:
    """The lines `process` prints up to the first for which `found(line)` holds."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if found(line):
            break
    return lines


@pytest.mark.slow
def test_ctrl_c_while_tensorflow_imports_ends_with_one_line(tmp_path):
    process = start([sys.executable, "train.py", f"--model_dir={tmp_path}"], fresh=True)
    while not importing_tensorflow(process):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr == "Stopped by SIGINT while starting: nothing was written\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_at_start_up_ends_with_one_line(tiny_data_dir, tmp_path):
    process = start(train_command(tiny_data_dir, tmp_path, "early", "--epochs=50"))
    read_until(process, lambda line: "Total params" in line)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert len(stderr.splitlines()) == 1 and stderr.startswith("Stopped by SIGINT")


@pytest.mark.slow
def test_sigterm_while_the_run_finishes_then_a_rerun_completes_it(tiny_data_dir, tmp_path):
    command = train_command(tiny_data_dir, tmp_path, "ending", "--epochs=1")
    process = start(command)
    workdir = tmp_path / "ending"
    while process.poll() is None and not (workdir / run_folder.MODEL).exists():
        time.sleep(0.01)  # The first file of the finish; the SavedModel takes seconds more.
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert stderr.startswith("Stopped by SIGTERM outside the training steps") and (
        len(stderr.splitlines()) == 1)
    assert run_folder.read_results(str(workdir)) is None
    assert_completes(command, workdir)


def assert_completes(command, workdir) -> str:
    """Runs `command` to its end; checks the run folder is whole; returns the fingerprint."""
    rerun = processes.run(command, cwd=ROOT, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr == ""
    assert all((workdir / name).exists() for name in run_folder.ARTIFACTS)
    assert run_folder.read_results(str(workdir))["test_count"] == 24
    assert keras.models.load_model(str(workdir / run_folder.MODEL)).count_params() == 167_562
    assert not [name for name in os.listdir(workdir) if name.endswith((".tmp", ".partial.keras"))]
    return run_folder.read_results(str(workdir))["weights_fingerprint"]


def wait_for_a_random_moment(process, rng: random.Random) -> str:
    """Waits for a moment drawn from the whole life of a run: TensorFlow's import,
    start-up, any printed line, the epochs, the finishing writes; returns it."""
    where = rng.choice(["import", "line", "epoch", "finish"])
    if where == "import":
        while not importing_tensorflow(process):
            time.sleep(0.005)
        delay = rng.uniform(0, 4)
    elif where == "line":
        for _, _ in zip(range(rng.randint(1, 30)), process.stdout):
            pass
        delay = rng.uniform(0, 0.5)
    else:
        last = f"Epoch {EPOCHS}/{EPOCHS}" if where == "finish" else "Epoch "
        read_until(process, lambda line: line.startswith(last))
        delay = rng.uniform(0, 3 if where == "finish" else 0.5)
    time.sleep(delay)
    return f"{where} +{delay:.2f}s"


@pytest.mark.slow
def test_signals_at_random_moments_end_in_one_line_and_a_rerun_completes(tiny_data_dir,
                                                                         tmp_path):
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    flags = (f"--epochs={EPOCHS}", "--deterministic", "--checkpoint_every_n_steps=4")
    command = train_command(tiny_data_dir, tmp_path, "signalled", *flags)
    for _ in range(RANDOM_SIGNALS):
        process = start(command, fresh=True)
        moment = wait_for_a_random_moment(process, rng)
        signum = rng.choice([signal.SIGINT, signal.SIGTERM])
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
        context = f"seed {seed}: {signum.name} at {moment}: exit {process.returncode}, {stderr}"
        if process.returncode == 0:  # It had finished when the signal came.
            assert stderr == "", context
        else:
            assert process.returncode == EXIT_CODES[signum], context
            assert len(stderr.splitlines()) == 1, context
            assert stderr.startswith(f"Stopped by {signum.name}"), context
    fingerprint = assert_completes(command, tmp_path / "signalled")
    reference = train_command(tiny_data_dir, tmp_path, "reference", *flags)
    assert assert_completes(reference, tmp_path / "reference") == fingerprint, f"seed {seed}"
